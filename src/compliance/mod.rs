//! Compliance hashing (placeholder; being written).
