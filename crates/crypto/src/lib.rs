//! Encryption at rest (AES-256-GCM, subject-bound) for offline-access credentials.
