//! Ingress tests.
