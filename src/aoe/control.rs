//! The AoE control commands: Query Config (1), Mac Mask List (2), Reserve/Release (3), and the
//! unsolicited Query Config response used to advertise a device.
//!
//! Replies list the current state. Lists longer than the port's MTU can carry are truncated to
//! what fits (a full 255-entry mask list needs 2044 bytes): the count field says how many
//! entries the reply holds.

use super::{aoe_error, begin_reply, pad, Ctx, Device, Outcome, PortInfo, FIRMWARE_VERSION};
use crate::aoe::state::{ConfigTooLong, ListFull};
use crate::wire::{
    AoeCommand, AoeError, AoeRepr, ConfigCommand, DirectiveCommand, DirectiveRepr, EthernetRepr,
    MacAddr, MacMaskCommand, MacMaskError, MacMaskPacket, QueryConfigPacket, QueryConfigRepr,
    ReserveCommand, ReservePacket, AOE_HEADER_LEN, AOE_VERSION, DIRECTIVE_LEN, ETHERTYPE_AOE,
    MASK_HEADER_LEN, RESERVE_HEADER_LEN,
};

/// Bytes of AoE payload (argument) a reply may carry on `port`, and in `buf` after `offset`.
fn arg_room(port: &PortInfo, buf: &[u8], offset: usize) -> usize {
    let by_mtu = usize::from(port.mtu).saturating_sub(AOE_HEADER_LEN);
    by_mtu.min(buf.len().saturating_sub(offset))
}

impl Device {
    pub(super) fn handle_query_config(&mut self, ctx: &Ctx, buf: &mut [u8]) -> Outcome {
        let offset = ctx.header.arg_offset();
        let Ok(request) = QueryConfigPacket::new_checked(&buf[offset..ctx.header.len]) else {
            self.counters.proto_errors += 1;
            return aoe_error(ctx, buf, AoeError::BadArgument);
        };
        if usize::from(request.config_string_len()) > crate::wire::CONFIG_STRING_MAX {
            self.counters.proto_errors += 1;
            return aoe_error(ctx, buf, AoeError::BadArgument);
        }
        let command = request.command();
        let theirs = request.config_string();
        let ours = self.cache.config_string();
        let answer = match command {
            ConfigCommand::Read => Ok(false),
            ConfigCommand::Test if theirs == ours => Ok(false),
            ConfigCommand::TestPrefix if ours.starts_with(theirs) => Ok(false),
            // A test that does not match is answered with silence (AoEr11 §3.2).
            ConfigCommand::Test | ConfigCommand::TestPrefix => return Outcome::Drop,
            ConfigCommand::Set | ConfigCommand::ForceSet => Err(()),
            ConfigCommand::Unknown(_) => {
                self.counters.proto_errors += 1;
                return aoe_error(ctx, buf, AoeError::BadArgument);
            }
        };
        let changed = match answer {
            Ok(changed) => changed,
            Err(()) => {
                let force = command == ConfigCommand::ForceSet;
                let (result, changed) = {
                    let theirs = &buf[offset..ctx.header.len];
                    let theirs = QueryConfigPacket::new_unchecked(theirs).config_string();
                    self.update(|state| set_config(state, theirs, force))
                };
                match result {
                    Ok(()) => changed,
                    Err(SetError::Present) => {
                        self.counters.proto_errors += 1;
                        return aoe_error(ctx, buf, AoeError::ConfigStringPresent);
                    }
                    Err(SetError::TooLong) => {
                        self.counters.proto_errors += 1;
                        return aoe_error(ctx, buf, AoeError::BadArgument);
                    }
                }
            }
        };
        self.counters.other_cmds += 1;
        begin_reply(ctx, buf);
        let len = self.emit_config(&ctx.port, command, buf, offset);
        Outcome::Reply {
            len: pad(buf, len),
            persist: changed,
        }
    }

    /// Writes the Query Config reply argument at `buf[offset..]`; returns the frame length.
    fn emit_config(
        &self,
        port: &PortInfo,
        command: ConfigCommand,
        buf: &mut [u8],
        offset: usize,
    ) -> usize {
        let repr = QueryConfigRepr {
            buffer_count: self.params.buffer_count,
            firmware_version: FIRMWARE_VERSION,
            sector_count: port.max_sectors(),
            aoe_version: AOE_VERSION,
            command,
            config_string: self.cache.config_string(),
        };
        let end = offset + repr.buffer_len();
        repr.emit(&mut QueryConfigPacket::new_unchecked(&mut buf[offset..end]));
        end
    }

    pub(super) fn handle_mask(&mut self, ctx: &Ctx, buf: &mut [u8]) -> Outcome {
        let offset = ctx.header.arg_offset();
        let Ok(request) = MacMaskPacket::new_checked(&buf[offset..ctx.header.len]) else {
            self.counters.proto_errors += 1;
            return aoe_error(ctx, buf, AoeError::BadArgument);
        };
        let (failure, changed) = match request.command() {
            MacMaskCommand::Read => (None, false),
            MacMaskCommand::Edit => self.update(|state| {
                let mut changed = false;
                for index in 0..request.dir_count() {
                    let directive = request.directive(usize::from(index));
                    match apply_directive(&mut state.mask, &directive) {
                        Ok(c) => changed |= c,
                        Err(error) => return (Some((index, error)), changed),
                    }
                }
                (None, changed)
            }),
            MacMaskCommand::Unknown(_) => {
                self.counters.proto_errors += 1;
                return aoe_error(ctx, buf, AoeError::BadArgument);
            }
        };
        self.counters.other_cmds += 1;
        begin_reply(ctx, buf);
        let mut reply = MacMaskPacket::new_unchecked(&mut buf[offset..]);
        let len = match failure {
            // On error the reply keeps the request's directives and Dir Count names the
            // directive that failed (AoEr11 §3.3); those before it took effect.
            Some((index, error)) => {
                reply.set_error(Some(error));
                reply.set_dir_count(index);
                offset + MASK_HEADER_LEN + usize::from(index) * DIRECTIVE_LEN
            }
            None => {
                reply.set_error(None);
                let room = arg_room(&ctx.port, buf, offset).saturating_sub(MASK_HEADER_LEN);
                let mut reply = MacMaskPacket::new_unchecked(&mut buf[offset..]);
                let list = self.cache.mask.as_slice();
                let shown = list.len().min(room / DIRECTIVE_LEN);
                for (index, mac) in list[..shown].iter().enumerate() {
                    let directive = DirectiveRepr {
                        command: DirectiveCommand::None,
                        mac: *mac,
                    };
                    reply.set_directive(index, &directive);
                }
                reply.set_dir_count(u8::try_from(shown).unwrap_or(u8::MAX));
                offset + MASK_HEADER_LEN + shown * DIRECTIVE_LEN
            }
        };
        Outcome::Reply {
            len: pad(buf, len),
            persist: changed,
        }
    }

    pub(super) fn handle_reserve(&mut self, ctx: &Ctx, buf: &mut [u8]) -> Outcome {
        let offset = ctx.header.arg_offset();
        let Ok(request) = ReservePacket::new_checked(&buf[offset..ctx.header.len]) else {
            self.counters.proto_errors += 1;
            return aoe_error(ctx, buf, AoeError::BadArgument);
        };
        let command = request.command();
        let src = ctx.header.src;
        let (allowed, changed) = match command {
            ReserveCommand::Read => (true, false),
            ReserveCommand::Set | ReserveCommand::ForceSet => self.update(|state| {
                // Only a holder (or anyone, when unreserved) may set; force set always wins.
                if command == ReserveCommand::Set && !state.reservation_allows(src) {
                    return (false, false);
                }
                let before = state.reserve.clone();
                state.reserve.clear();
                for index in 0..request.nmacs() {
                    // 255 entries fit: the count field is one byte.
                    let _ = state.reserve.insert(request.mac(usize::from(index)));
                }
                (true, state.reserve != before)
            }),
            ReserveCommand::Unknown(_) => {
                self.counters.proto_errors += 1;
                return aoe_error(ctx, buf, AoeError::BadArgument);
            }
        };
        if !allowed {
            self.counters.proto_errors += 1;
            return aoe_error(ctx, buf, AoeError::TargetReserved);
        }
        self.counters.other_cmds += 1;
        begin_reply(ctx, buf);
        let room = arg_room(&ctx.port, buf, offset).saturating_sub(RESERVE_HEADER_LEN);
        let mut reply = ReservePacket::new_unchecked(&mut buf[offset..]);
        let list = self.cache.reserve.as_slice();
        let shown = list.len().min(room / MacAddr::LEN);
        for (index, mac) in list[..shown].iter().enumerate() {
            reply.set_mac(index, *mac);
        }
        reply.set_nmacs(u8::try_from(shown).unwrap_or(u8::MAX));
        let len = offset + RESERVE_HEADER_LEN + shown * 6;
        Outcome::Reply {
            len: pad(buf, len),
            persist: changed,
        }
    }

    pub(super) fn advertisement(&self, port: &PortInfo, dst: MacAddr, buf: &mut [u8]) -> usize {
        let eth = EthernetRepr {
            dst_addr: dst,
            src_addr: port.mac,
            vlan_tci: None,
            ethertype: ETHERTYPE_AOE,
        };
        let aoe = AoeRepr {
            version: AOE_VERSION,
            response: true,
            error: None,
            major: self.params.shelf,
            minor: self.params.slot,
            command: AoeCommand::QueryConfig,
            tag: 0,
        };
        let eth_len = eth.buffer_len();
        eth.emit(&mut crate::wire::EthernetFrame::new_unchecked(
            &mut buf[..eth_len],
        ));
        let offset = eth_len + aoe.buffer_len();
        aoe.emit(&mut crate::wire::AoePacket::new_unchecked(
            &mut buf[eth_len..offset],
        ));
        let len = self.emit_config(port, ConfigCommand::Read, buf, offset);
        pad(buf, len)
    }
}

enum SetError {
    Present,
    TooLong,
}

/// Query Config set (3: only if empty or equal) and force set (4).
fn set_config(
    state: &mut super::DeviceState,
    value: &[u8],
    force: bool,
) -> (Result<(), SetError>, bool) {
    let current = state.config_string();
    if current == value {
        return (Ok(()), false);
    }
    if !force && !current.is_empty() {
        return (Err(SetError::Present), false);
    }
    match state.set_config_string(value) {
        Ok(()) => (Ok(()), true),
        Err(ConfigTooLong) => (Err(SetError::TooLong), false),
    }
}

/// Applies one Mac Mask List directive; returns whether the list changed.
fn apply_directive(
    mask: &mut super::MacList<{ super::state::MASK_LIST_MAX }>,
    directive: &DirectiveRepr,
) -> Result<bool, MacMaskError> {
    match directive.command {
        DirectiveCommand::None => Ok(false),
        DirectiveCommand::Add => mask
            .insert(directive.mac)
            .map_err(|ListFull| MacMaskError::ListFull),
        DirectiveCommand::Delete => Ok(mask.remove(directive.mac)),
        DirectiveCommand::Unknown(_) => Err(MacMaskError::BadDirective),
    }
}
