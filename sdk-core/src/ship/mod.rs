//! Shipping closed windows to the agent over gRPC from one background thread.
