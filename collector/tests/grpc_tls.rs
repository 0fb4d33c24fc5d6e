//! Optional TLS on gRPC ingest: with a certificate configured, a TLS client that trusts it gets
//! through and a plaintext client does not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{Collector, admin, identity, window_item};
use neurocloak_proto::v1::IngestBatch;
use neurocloak_proto::v1::ingest_service_client::IngestServiceClient;
use tonic::Request;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_get_through_and_plaintext_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        // An end-entity certificate: openssl's default self-signed one is a CA, which rustls
        // refuses as a server certificate.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is needed to make a test certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let storage = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let boot = admin(&[
        "bootstrap",
        "--org",
        "o",
        "--project",
        "p",
        "--storage",
        &storage,
    ]);
    let key_text = boot["api_key"].as_str().unwrap().to_owned();
    let (cert_arg, key_arg) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let collector = Collector::start(
        &storage,
        &[
            "--jobs-enabled",
            "false",
            "--grpc-tls-cert",
            cert_arg,
            "--grpc-tls-key",
            key_arg,
        ],
    );

    let batch = IngestBatch {
        batch_id: "tls-1".into(),
        agent_id: "a".into(),
        items: vec![window_item(common::window_profile_rows(
            identity("p", "m"),
            0,
            1,
            20,
        ))],
    };
    let request = || {
        let mut r = Request::new(batch.clone());
        r.metadata_mut()
            .insert("x-api-key", key_text.parse().unwrap());
        r
    };

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&cert).unwrap()))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{}", collector.grpc))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let ack = IngestServiceClient::new(channel)
        .ingest(request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.stored, 1);

    // A plaintext HTTP/2 client cannot speak to the TLS listener.
    let plain = async {
        let mut c = IngestServiceClient::connect(format!("http://{}", collector.grpc)).await?;
        c.ingest(request())
            .await
            .map_err(Box::<dyn std::error::Error>::from)?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), plain).await;
    assert!(
        !matches!(outcome, Ok(Ok(()))),
        "plaintext request went through a TLS listener"
    );
}
