//! Google's Cross-Account Protection (RISC): verifying the Security Event Tokens Google pushes
//! ([`RiscVerifier`]), and managing the stream that sends them ([`RiscStreams`], signing as a
//! [`ServiceAccountKey`]).

mod set;
mod streams;

pub(crate) use set::SetRules;
pub use set::{MAX_JTI_LEN, MAX_SET_LEN, RiscVerifier};
pub use streams::{
    Delivery, PUSH_DELIVERY_METHOD, RISC_AUDIENCE, RiscApiError, RiscStreams,
    SERVICE_ACCOUNT_JWT_LIFETIME, ServiceAccountError, ServiceAccountKey, StreamConfig,
    StreamStatus,
};

/// Remote text for a message or a log line: at most `max` characters, control characters replaced by spaces.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::bounded;

    #[test]
    fn remote_text_is_bounded_and_has_no_control_characters() {
        assert_eq!(bounded("a\nb\u{7}c", 10), "a b c");
        assert_eq!(bounded(&"x".repeat(600), 500).len(), 500);
    }
}
