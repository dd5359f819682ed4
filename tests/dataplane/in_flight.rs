//! Many requests in flight at once on a raw socket: all sent before any reply is read, the
//! replies then collected by tag.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aoe_xdp::initiator::frames::{self, AtaCmd, Reply, Route};
use aoe_xdp::sys::packet::raw::RawSocket;

/// Sends every request (tags `first_tag`, `first_tag + 1`, ...) before reading any reply;
/// returns the replies in request order. Panics naming the tags that never came back.
pub fn burst(
    socket: &RawSocket,
    route: &Route,
    first_tag: u64,
    requests: &[(AtaCmd, Vec<u8>)],
) -> Vec<Vec<u8>> {
    let tags = send_all(socket, route, first_tag, requests);
    collect(socket, &tags)
}

/// Sends every request (tags `first_tag`, `first_tag + 1`, ...); returns tag -> index.
pub fn send_all(
    socket: &RawSocket,
    route: &Route,
    first_tag: u64,
    requests: &[(AtaCmd, Vec<u8>)],
) -> HashMap<u32, usize> {
    let first_tag = u32::try_from(first_tag).expect("tag fits");
    let mut buf = vec![0u8; 2048];
    let mut tags = HashMap::new();
    for (index, (cmd, data)) in requests.iter().enumerate() {
        let tag = first_tag + u32::try_from(index).expect("small burst");
        let len = frames::ata(&mut buf, route, tag, cmd, data);
        socket.send(&buf[..len]).expect("send request");
        tags.insert(tag, index);
    }
    tags
}

/// Receives the reply of every request in `tags` (tag -> index), in request order. Panics
/// naming the tags that never came back.
pub fn collect(socket: &RawSocket, tags: &HashMap<u32, usize>) -> Vec<Vec<u8>> {
    let mut replies = vec![Vec::new(); tags.len()];
    let mut missing = tags.len();
    let deadline = Instant::now() + Duration::from_secs(5);
    while missing > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(frame) = socket
            .recv_matching(left, |f| {
                Reply::parse(f).is_some_and(|r| tags.contains_key(&r.aoe.tag))
            })
            .expect("receive")
        else {
            let mut lost: Vec<u32> = tags
                .iter()
                .filter(|(_, &index)| replies[index].is_empty())
                .map(|(&tag, _)| tag)
                .collect();
            lost.sort_unstable();
            panic!(
                "{missing} of {} replies missing: tags {lost:x?}",
                tags.len()
            );
        };
        let index = tags[&Reply::parse(&frame).expect("reply").aoe.tag];
        assert!(replies[index].is_empty(), "two replies for request {index}");
        replies[index] = frame;
        missing -= 1;
    }
    replies
}
