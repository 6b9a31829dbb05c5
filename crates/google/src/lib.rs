//! Google adapter: token endpoint, revoke, JWKS/ID-token verification, Drive v3.
