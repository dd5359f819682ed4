//! `view!`: a header view and its field table, the one place a header's offsets are written.
//!
//! Every view has the same frame (smoltcp `src/wire/ethernet.rs`): a struct over any
//! `T: AsRef<[u8]>`, `new_unchecked`, `new_checked` (through the view's own `check_len`),
//! `into_inner`, a private `mod field` of byte offsets, and a getter (`AsRef`) and setter
//! (`AsMut`) per plain field. The macro writes that frame from one table per header; what is
//! particular to a header (nibbles, flags, lists, `check_len`, payloads) stays hand-written
//! next to it.
//!
//! Getters and setters go through [`Value`]: one byte, big-endian integers, MAC addresses and
//! `enum_with_unknown!` enums. Everything is static and `#[inline]`; an accessor compiles to
//! the same indexing as one written out by hand (no tables at run time, no `dyn`).
//!
//! Hazard: setters index like hand-written ones, so a buffer too short for the field panics
//! (a caller bug on the TX path, see `wire`); getters on a checked view never do.

use super::{Error, Field, Result};

/// A value a header stores at a fixed place: `P` is `usize` for one byte, [`Field`] for a run
/// of bytes.
pub(super) trait Value<P>: Sized {
    /// Reads the value at `at`.
    fn read(data: &[u8], at: P) -> Self;
    /// Writes the value at `at`.
    fn write(self, data: &mut [u8], at: P);
}

impl Value<usize> for u8 {
    #[inline]
    fn read(data: &[u8], at: usize) -> u8 {
        data[at]
    }

    #[inline]
    fn write(self, data: &mut [u8], at: usize) {
        data[at] = self;
    }
}

impl Value<Field> for u16 {
    /// Big-endian.
    #[inline]
    fn read(data: &[u8], at: Field) -> u16 {
        let bytes = &data[at];
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    #[inline]
    fn write(self, data: &mut [u8], at: Field) {
        data[at].copy_from_slice(&self.to_be_bytes());
    }
}

impl Value<Field> for u32 {
    /// Big-endian.
    #[inline]
    fn read(data: &[u8], at: Field) -> u32 {
        let bytes = &data[at];
        u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }

    #[inline]
    fn write(self, data: &mut [u8], at: Field) {
        data[at].copy_from_slice(&self.to_be_bytes());
    }
}

/// Checks that a buffer of `len` bytes holds a `header_len`-byte header and the `declared`
/// bytes the header says follow it. `declared` reads the header, so it is called only once the
/// header is known to be there.
#[inline]
pub(super) fn check_len(
    len: usize,
    header_len: usize,
    declared: impl FnOnce() -> usize,
) -> Result<()> {
    if len < header_len || len - header_len < declared() {
        Err(Error)
    } else {
        Ok(())
    }
}

/// Writes `value` into the high nibble of `byte`, keeping the low one.
///
/// # Panics
/// If `value` does not fit in four bits; the message names it as `what`.
#[inline]
pub(super) fn set_high_nibble(byte: &mut u8, value: u8, what: &str) {
    assert!(value <= 0x0F, "{what} {value} does not fit in a nibble");
    *byte = value << 4 | (*byte & 0x0F);
}

/// Writes `value` into the low nibble of `byte`, keeping the high one.
///
/// # Panics
/// If `value` does not fit in four bits; the message names it as `what`.
#[inline]
pub(super) fn set_low_nibble(byte: &mut u8, value: u8, what: &str) {
    assert!(value <= 0x0F, "{what} {value} does not fit in a nibble");
    *byte = (*byte & 0xF0) | value;
}

/// Declares a view and its `mod field`: one line per field, `NAME: Field = 2..4` as in
/// smoltcp, and for a plain field its getter, optional setter and value type.
///
/// ```text
/// view! {
///     /// Doc comment of the view.
///     pub struct Packet;
///     mod field {
///         /// Doc comment of the field and its getter.
///         FLAGS: usize = 0;
///         COUNT: usize = 1 => pub count, set_count: u8;
///         LEN: Field = 2..4 => pub len: u16;
///         REST: Rest = 4..;
///     }
/// }
/// ```
///
/// The view must define `check_len(&self) -> Result<()>`; `new_checked` calls it.
macro_rules! view {
    (@get [$( #[$attr:meta] )*] $field:ident) => {};
    (@get [$( #[$attr:meta] )*] $field:ident => $vis:vis $get:ident: $value:ty) => {
        $( #[$attr] )*
        #[inline]
        $vis fn $get(&self) -> $value {
            <$value as $crate::wire::view::Value<_>>::read(self.buffer.as_ref(), field::$field)
        }
    };
    (@set $field:ident => $vis:vis $get:ident, $set:ident: $value:ty) => {
        #[doc = concat!("Sets [`", stringify!($get), "`](Self::", stringify!($get), ").")]
        #[inline]
        $vis fn $set(&mut self, value: $value) {
            <$value as $crate::wire::view::Value<_>>::write(value, self.buffer.as_mut(), field::$field)
        }
    };
    (
        $( #[$view_attr:meta] )*
        pub struct $view:ident;
        mod field {
            $(
                $( #[$field_attr:meta] )*
                $field:ident: $place:ty = $at:expr
                $( => $vis:vis $get:ident $( , $set:ident )?: $value:ty )?;
            )*
        }
    ) => {
        $( #[$view_attr] )*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $view<T: AsRef<[u8]>> {
            buffer: T,
        }

        mod field {
            use super::*;

            $(
                $( #[$field_attr] )*
                pub const $field: $place = $at;
            )*
        }

        impl<T: AsRef<[u8]>> $view<T> {
            /// Wraps a buffer without checking it (TX path).
            #[inline]
            pub const fn new_unchecked(buffer: T) -> $view<T> {
                $view { buffer }
            }

            /// Wraps a buffer after [`check_len`](Self::check_len) (RX path).
            #[inline]
            pub fn new_checked(buffer: T) -> $crate::wire::Result<$view<T>> {
                let view = Self::new_unchecked(buffer);
                view.check_len()?;
                Ok(view)
            }

            /// Returns the buffer.
            #[inline]
            pub fn into_inner(self) -> T {
                self.buffer
            }

            $( $crate::wire::view::view!(@get [$( #[$field_attr] )*] $field $( => $vis $get: $value )?); )*
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $view<T> {
            $( $( $( $crate::wire::view::view!(@set $field => $vis $get, $set: $value); )? )? )*
        }
    };
}

pub(crate) use view;
