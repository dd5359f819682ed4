//! What the target answers, checked: ATA and AoE errors, silence, IDENTIFY words and strings.

use aoe_xdp::initiator::client::ClientError;
use aoe_xdp::wire::ata::status as ata_status;
use aoe_xdp::wire::AoeError;

/// Asserts `result` is an ATA error with error register `error`.
pub fn assert_ata_error<T: std::fmt::Debug>(result: Result<T, ClientError>, error: u8, what: &str) {
    match result {
        Err(ClientError::Ata { status, error: got }) => {
            assert_ne!(status & ata_status::ERR, 0, "{what}: ERR not set");
            assert_eq!(got, error, "{what}: ATA error register");
        }
        other => panic!("{what}: expected ATA error {error:#04x}, got {other:?}"),
    }
}

/// Asserts `result` is the AoE error `error`.
pub fn assert_aoe_error<T: std::fmt::Debug>(result: Result<T, ClientError>, error: AoeError) {
    match result {
        Err(ClientError::Aoe(got)) => assert_eq!(got, error),
        other => panic!("expected AoE error {error:?}, got {other:?}"),
    }
}

/// Asserts the target never answered.
pub fn assert_silent<T: std::fmt::Debug>(result: Result<T, ClientError>, what: &str) {
    assert!(
        matches!(result, Err(ClientError::Timeout { .. })),
        "{what}: expected no reply, got {result:?}"
    );
}

/// Little-endian word `index` of an IDENTIFY block.
pub fn word(identify: &[u8], index: usize) -> u16 {
    u16::from_le_bytes([identify[2 * index], identify[2 * index + 1]])
}

/// An ATA string (two characters per word, first in the high byte), trailing spaces cut.
pub fn ata_string(identify: &[u8], first_word: usize, words: usize) -> String {
    let mut text = String::new();
    for index in first_word..first_word + words {
        let [high, low] = word(identify, index).to_be_bytes();
        text.push(char::from(high));
        text.push(char::from(low));
    }
    text.trim_end().to_owned()
}
