//! The on-disk form of a device's changeable AoE state (config string, mask, reservation).
//!
//! A small TOML document, readable by an administrator:
//!
//! ```toml
//! # aoe-xdp device state
//! format = 1
//! config-string-hex = "68656c6c6f"
//! mac-mask = ["02:00:00:00:00:01"]
//! reserve = []
//! ```
//!
//! The config string is arbitrary bytes, hence hex. Encoding and decoding are pure; writing the
//! file crash-safely is the job of [`crate::state_dir`].

use serde::{Deserialize, Serialize};

use super::state::{DeviceState, MacList, CONFIG_STRING_MAX};
use crate::wire::MacAddr;

const FORMAT: u32 = 1;

/// Why a state document could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not TOML of the expected shape.
    #[error("not a device state document")]
    Toml(#[from] toml::de::Error),
    /// A newer or unknown format.
    #[error("unsupported state format {0} (this build reads format {FORMAT})")]
    Format(u32),
    /// The config string is not hex or too long.
    #[error("bad config string: {0}")]
    ConfigString(&'static str),
    /// A MAC address does not parse.
    #[error("bad MAC address {0:?}")]
    Mac(String),
    /// More entries than a list holds.
    #[error("{0} has too many entries")]
    TooMany(&'static str),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawState {
    format: u32,
    config_string_hex: String,
    mac_mask: Vec<String>,
    reserve: Vec<String>,
}

/// Encodes `state` as a TOML document.
pub fn encode(state: &DeviceState) -> String {
    let hex: String = state
        .config_string()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let raw = RawState {
        format: FORMAT,
        config_string_hex: hex,
        mac_mask: state
            .mask
            .as_slice()
            .iter()
            .map(MacAddr::to_string)
            .collect(),
        reserve: state
            .reserve
            .as_slice()
            .iter()
            .map(MacAddr::to_string)
            .collect(),
    };
    let body = toml::to_string(&raw).expect("state serializes");
    format!("# aoe-xdp device state; rewritten atomically by aoe-xdp\n{body}")
}

/// Decodes a document written by [`encode`].
pub fn decode(text: &str) -> Result<DeviceState, DecodeError> {
    let raw: RawState = toml::from_str(text)?;
    if raw.format != FORMAT {
        return Err(DecodeError::Format(raw.format));
    }
    let mut state = DeviceState::default();
    let hex = raw.config_string_hex.as_bytes();
    if hex.len() % 2 != 0 || hex.len() / 2 > CONFIG_STRING_MAX {
        return Err(DecodeError::ConfigString(
            "odd length or longer than 1024 bytes",
        ));
    }
    let mut bytes = [0u8; CONFIG_STRING_MAX];
    for (index, pair) in hex.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).map_err(|_| DecodeError::ConfigString("not hex"))?;
        bytes[index] =
            u8::from_str_radix(pair, 16).map_err(|_| DecodeError::ConfigString("not hex"))?;
    }
    state
        .set_config_string(&bytes[..hex.len() / 2])
        .map_err(|_| DecodeError::ConfigString("longer than 1024 bytes"))?;
    decode_macs(&raw.mac_mask, &mut state.mask, "mac-mask")?;
    decode_macs(&raw.reserve, &mut state.reserve, "reserve")?;
    Ok(state)
}

/// Parses the MACs of the list the document calls `name` into `list`.
fn decode_macs<const N: usize>(
    texts: &[String],
    list: &mut MacList<N>,
    name: &'static str,
) -> Result<(), DecodeError> {
    for text in texts {
        let mac = text.parse().map_err(|_| DecodeError::Mac(text.clone()))?;
        list.insert(mac).map_err(|_| DecodeError::TooMany(name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_document() {
        let mut state = DeviceState::default();
        state.set_config_string(b"hi\0").unwrap();
        state.mask.insert(MacAddr([2, 0, 0, 0, 0, 1])).unwrap();
        let text = encode(&state);
        assert!(text.contains("config-string-hex = \"686900\""), "{text}");
        assert!(
            text.contains("mac-mask = [\"02:00:00:00:00:01\"]"),
            "{text}"
        );
        assert_eq!(decode(&text).unwrap(), state);
    }

    #[test]
    fn rejects_bad_documents() {
        let base = "format = 1\nconfig-string-hex = \"\"\nmac-mask = []\nreserve = []\n";
        assert!(decode(base).is_ok());
        assert!(matches!(
            decode(&base.replace("= 1", "= 2")),
            Err(DecodeError::Format(2))
        ));
        let odd = base.replace("hex = \"\"", "hex = \"abc\"");
        assert!(matches!(decode(&odd), Err(DecodeError::ConfigString(_))));
        let nothex = base.replace("hex = \"\"", "hex = \"zz\"");
        assert!(matches!(decode(&nothex), Err(DecodeError::ConfigString(_))));
        let mac = base.replace("mac-mask = []", "mac-mask = [\"nope\"]");
        assert!(matches!(decode(&mac), Err(DecodeError::Mac(_))));
        assert!(matches!(decode("format = 1\n"), Err(DecodeError::Toml(_))));
        assert!(matches!(
            decode(&format!("{base}extra = 1\n")),
            Err(DecodeError::Toml(_))
        ));
    }

    proptest! {
        #[test]
        fn round_trip(
            config in proptest::collection::vec(any::<u8>(), 0..=CONFIG_STRING_MAX),
            mask in proptest::collection::vec(any::<[u8; 6]>(), 0..40),
            reserve in proptest::collection::vec(any::<[u8; 6]>(), 0..40),
        ) {
            let mut state = DeviceState::default();
            state.set_config_string(&config).unwrap();
            for mac in mask { state.mask.insert(MacAddr(mac)).unwrap(); }
            for mac in reserve { state.reserve.insert(MacAddr(mac)).unwrap(); }
            prop_assert_eq!(decode(&encode(&state)).unwrap(), state);
        }
    }
}
