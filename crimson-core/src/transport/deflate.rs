//! permessage-deflate (RFC 7692): negotiating it, and compressing and inflating messages.
//!
//! Without context takeover (Crimson's default in both directions) every message is
//! compressed on its own, so the compressor and inflater are shared by every connection of a
//! thread and an idle connection holds no compression state at all; a broadcast can then be
//! compressed once and the same bytes sent to every recipient. With context takeover a
//! connection keeps its own compressor or inflater (about 300 KiB and 40 KiB with zlib-rs),
//! which compresses better when consecutive messages look alike.

use std::cell::RefCell;
use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The bytes every compressed message ends with before its tail is removed (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// permessage-deflate settings, the same type for the server and the client.
///
/// The defaults: on, no context takeover in either direction (no per-connection state, and a
/// broadcast is compressed once for every recipient), 15-bit windows, level 1 (fast),
/// messages under 128 bytes sent uncompressed.
///
/// ```
/// use crimson_core::transport::Deflate;
///
/// let deflate = Deflate::new().level(6).min_size(256);
/// assert_eq!(deflate.get_min_size(), 256);
/// let off = Deflate::disabled();
/// assert!(!off.is_enabled());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Deflate {
    enabled: bool,
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: u8,
    client_max_window_bits: u8,
    level: u32,
    min_size: usize,
}

impl Default for Deflate {
    fn default() -> Self {
        Self::new()
    }
}

/// A permessage-deflate setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DeflateConfigError(String);

impl Deflate {
    /// permessage-deflate on, with the defaults above.
    pub const fn new() -> Self {
        Self {
            enabled: true,
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 1,
            min_size: 128,
        }
    }

    /// permessage-deflate off: never offered (client) or accepted (server).
    pub const fn disabled() -> Self {
        let mut deflate = Self::new();
        deflate.enabled = false;
        deflate
    }

    /// Whether compression is on.
    pub const fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether the server compresses each message on its own (`true`, the default), or keeps
    /// its compressor's history from one message to the next (better ratios for similar
    /// messages, ~300 KiB per connection, and no compress-once broadcasts).
    pub const fn server_no_context_takeover(mut self, no_takeover: bool) -> Self {
        self.server_no_context_takeover = no_takeover;
        self
    }

    /// The same for the client's messages (with takeover the server keeps an inflater of
    /// ~40 KiB per connection).
    pub const fn client_no_context_takeover(mut self, no_takeover: bool) -> Self {
        self.client_no_context_takeover = no_takeover;
        self
    }

    /// The largest LZ77 window the server compresses with, as a power of two: 9 to 15
    /// (default 15).
    pub fn server_max_window_bits(mut self, bits: u8) -> Result<Self, DeflateConfigError> {
        self.server_max_window_bits = check_bits("server_max_window_bits", bits)?;
        Ok(self)
    }

    /// The largest LZ77 window the client compresses with: 9 to 15 (default 15).
    pub fn client_max_window_bits(mut self, bits: u8) -> Result<Self, DeflateConfigError> {
        self.client_max_window_bits = check_bits("client_max_window_bits", bits)?;
        Ok(self)
    }

    /// The compression level, 0 (store) to 9 (smallest); 1 by default.
    ///
    /// # Panics
    ///
    /// If `level` is over 9.
    #[track_caller]
    pub const fn level(mut self, level: u32) -> Self {
        assert!(level <= 9, "the deflate level must be 0 to 9");
        self.level = level;
        self
    }

    /// Messages shorter than this many bytes are sent uncompressed (default 128).
    pub const fn min_size(mut self, bytes: usize) -> Self {
        self.min_size = bytes;
        self
    }

    /// The smallest message that is compressed.
    pub const fn get_min_size(&self) -> usize {
        self.min_size
    }

    /// The compression level.
    pub const fn get_level(&self) -> u32 {
        self.level
    }
}

fn check_bits(name: &str, bits: u8) -> Result<u8, DeflateConfigError> {
    if (9..=15).contains(&bits) {
        Ok(bits)
    } else {
        Err(DeflateConfigError(format!(
            "{name} must be 9 to 15 (zlib cannot make raw deflate streams with a 256-byte window), not {bits}"
        )))
    }
}

/// What both ends agreed on for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The server compresses each message on its own.
    pub server_no_context_takeover: bool,
    /// The client compresses each message on its own.
    pub client_no_context_takeover: bool,
    /// The server's window, as a power of two.
    pub server_max_window_bits: u8,
    /// The client's window, as a power of two.
    pub client_max_window_bits: u8,
    /// The level this end compresses with.
    pub level: u32,
    /// The smallest message this end compresses.
    pub min_size: usize,
}

impl Negotiated {
    /// The settings this end sends with (`server` is whether this end is the server).
    pub(crate) fn outgoing(&self, server: bool) -> Direction {
        if server {
            Direction {
                no_takeover: self.server_no_context_takeover,
                window_bits: self.server_max_window_bits,
            }
        } else {
            Direction {
                no_takeover: self.client_no_context_takeover,
                window_bits: self.client_max_window_bits,
            }
        }
    }

    /// The settings the peer sends with.
    pub(crate) fn incoming(&self, server: bool) -> Direction {
        self.outgoing(!server)
    }

    /// The key under which a compress-once broadcast caches its compressed bytes: every
    /// server connection with the same key can share them (no context takeover only).
    pub fn shared_key(&self) -> Option<(u32, u8)> {
        self.server_no_context_takeover
            .then_some((self.level, self.server_max_window_bits))
    }
}

/// One direction's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Direction {
    pub(crate) no_takeover: bool,
    pub(crate) window_bits: u8,
}

/// One `name; key; key=value` element of a `Sec-WebSocket-Extensions` header.
struct Offer<'a> {
    name: &'a str,
    params: Vec<(&'a str, Option<&'a str>)>,
}

/// Splits `Sec-WebSocket-Extensions` values into offers (quoted values unquoted; no commas or
/// semicolons inside quotes are needed by permessage-deflate, so none are handled).
fn offers<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Offer<'a>> {
    let mut out = Vec::new();
    for value in values {
        for offer in value.split(',') {
            let mut parts = offer.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            if name.is_empty() {
                continue;
            }
            let params = parts
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                    None => (p, None),
                })
                .collect();
            out.push(Offer { name, params });
        }
    }
    out
}

fn parse_bits(value: Option<&str>) -> Option<u8> {
    let bits: u8 = value?.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

/// The server's side: the first permessage-deflate offer it can accept, and the
/// `Sec-WebSocket-Extensions` value to answer with. `None` when compression is off or no
/// offer fits (the connection then goes uncompressed).
pub fn negotiate<'a>(
    config: &Deflate,
    values: impl IntoIterator<Item = &'a str>,
) -> Option<(Negotiated, String)> {
    if !config.enabled {
        return None;
    }
    'offers: for offer in offers(values) {
        if !offer.name.eq_ignore_ascii_case("permessage-deflate") {
            continue;
        }
        let mut server_no_takeover = config.server_no_context_takeover;
        let mut server_bits = config.server_max_window_bits;
        let mut server_bits_asked = false;
        let mut client_bits_offered = false;
        let mut client_bits = 15;
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in &offer.params {
            if seen.contains(key) {
                continue 'offers;
            }
            seen.push(key);
            match *key {
                "server_no_context_takeover" if value.is_none() => server_no_takeover = true,
                "client_no_context_takeover" if value.is_none() => {}
                "server_max_window_bits" => {
                    let Some(bits) = parse_bits(*value) else {
                        continue 'offers;
                    };
                    // zlib cannot honour a 256-byte window: decline this offer.
                    if bits < 9 {
                        continue 'offers;
                    }
                    server_bits = server_bits.min(bits);
                    server_bits_asked = true;
                }
                "client_max_window_bits" => {
                    if value.is_some() {
                        let Some(bits) = parse_bits(*value) else {
                            continue 'offers;
                        };
                        client_bits = bits;
                    }
                    client_bits_offered = true;
                }
                _ => continue 'offers,
            }
        }
        let client_no_takeover = config.client_no_context_takeover;
        let mut response = String::from("permessage-deflate");
        if server_no_takeover {
            response.push_str("; server_no_context_takeover");
        }
        if client_no_takeover {
            response.push_str("; client_no_context_takeover");
        }
        // A window smaller than 15 may be announced only when the offer named the parameter.
        if server_bits_asked || server_bits < 15 {
            if !server_bits_asked {
                // Not offered: we cannot announce it, so we must compress with 15 bits.
                server_bits = 15;
            } else {
                response.push_str(&format!("; server_max_window_bits={server_bits}"));
            }
        }
        if client_bits_offered {
            let bits = client_bits.min(config.client_max_window_bits);
            if bits < 15 {
                response.push_str(&format!("; client_max_window_bits={bits}"));
            }
            client_bits = bits;
        }
        return Some((
            Negotiated {
                server_no_context_takeover: server_no_takeover,
                client_no_context_takeover: client_no_takeover,
                server_max_window_bits: server_bits,
                client_max_window_bits: client_bits,
                level: config.level,
                min_size: config.min_size,
            },
            response,
        ));
    }
    None
}

/// The client's offer for `Sec-WebSocket-Extensions`, or `None` when compression is off.
pub fn offer(config: &Deflate) -> Option<String> {
    if !config.enabled {
        return None;
    }
    let mut offer = String::from("permessage-deflate");
    if config.server_no_context_takeover {
        offer.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        offer.push_str("; client_no_context_takeover");
    }
    if config.server_max_window_bits < 15 {
        offer.push_str(&format!(
            "; server_max_window_bits={}",
            config.server_max_window_bits
        ));
    }
    offer.push_str("; client_max_window_bits");
    if config.client_max_window_bits < 15 {
        offer.push_str(&format!("={}", config.client_max_window_bits));
    }
    Some(offer)
}

/// The client's side: what the server's `Sec-WebSocket-Extensions` answer agreed to.
/// An extension the client did not offer, or parameters it cannot honour, are errors.
pub fn accept<'a>(
    config: &Deflate,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Option<Negotiated>, String> {
    let mut negotiated = None;
    for answer in offers(values) {
        if !answer.name.eq_ignore_ascii_case("permessage-deflate") {
            return Err(format!(
                "the server answered with extension `{}`, which was not offered",
                answer.name
            ));
        }
        if !config.enabled {
            return Err("the server enabled permessage-deflate, which was not offered".into());
        }
        if negotiated.is_some() {
            return Err("the server answered with permessage-deflate twice".into());
        }
        let mut agreed = Negotiated {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: config.level,
            min_size: config.min_size,
        };
        for (key, value) in &answer.params {
            let bad = || format!("the server's permessage-deflate parameter `{key}` is invalid");
            match *key {
                "server_no_context_takeover" if value.is_none() => {
                    agreed.server_no_context_takeover = true;
                }
                "client_no_context_takeover" if value.is_none() => {
                    agreed.client_no_context_takeover = true;
                }
                "server_max_window_bits" => {
                    agreed.server_max_window_bits = parse_bits(*value).ok_or_else(bad)?;
                }
                "client_max_window_bits" => {
                    let bits = parse_bits(*value).ok_or_else(bad)?;
                    // zlib cannot compress with a 256-byte window; 9 is the smallest.
                    if bits < 9 {
                        return Err(bad());
                    }
                    agreed.client_max_window_bits = bits.min(config.client_max_window_bits);
                }
                _ => return Err(bad()),
            }
        }
        agreed.client_max_window_bits = agreed
            .client_max_window_bits
            .min(config.client_max_window_bits);
        // A sender may always compress each message on its own. A server that keeps its
        // context (it did not answer `server_no_context_takeover`) is read with an inflater
        // that keeps it too.
        agreed.client_no_context_takeover |= config.client_no_context_takeover;
        negotiated = Some(agreed);
    }
    Ok(negotiated)
}

thread_local! {
    /// Compressors without context takeover, one per (level, window bits) in use on this
    /// thread, shared by every connection and broadcast.
    static COMPRESSORS: RefCell<Vec<(u32, u8, Compress)>> = const { RefCell::new(Vec::new()) };
    /// The inflater for messages without context takeover, shared on this thread.
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Runs `deflate` over `data` and returns the compressed message without its tail, or `None`
/// when compressing would not make it smaller.
fn run_compress(engine: &mut Compress, data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let start_in = engine.total_in();
    loop {
        let consumed = (engine.total_in() - start_in) as usize;
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let status = engine.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync);
        let consumed = (engine.total_in() - start_in) as usize;
        match status {
            Ok(_) if consumed == data.len() && out.len() < out.capacity() => break,
            Ok(Status::Ok | Status::BufError | Status::StreamEnd) => {}
            Err(_) => return None,
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    (out.len() < data.len()).then_some(out)
}

#[cfg(test)]
thread_local! {
    /// How many messages `compress_alone` compressed on this thread (tests count them).
    pub(crate) static COMPRESSED_ALONE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Compresses one message on its own (no context takeover) with the thread's shared
/// compressor; `None` when that would not make it smaller.
pub fn compress_alone(level: u32, window_bits: u8, data: &[u8]) -> Option<Vec<u8>> {
    #[cfg(test)]
    COMPRESSED_ALONE.with(|count| count.set(count.get() + 1));
    let with = |engines: &mut Vec<(u32, u8, Compress)>| {
        let at = match engines
            .iter()
            .position(|(l, w, _)| *l == level && *w == window_bits)
        {
            Some(at) => at,
            None => {
                engines.push((level, window_bits, new_compress(level, window_bits)));
                engines.len() - 1
            }
        };
        let engine = &mut engines[at].2;
        let out = run_compress(engine, data);
        engine.reset();
        out
    };
    COMPRESSORS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut engines) => with(&mut engines),
        // Only if compressing re-entered itself on this thread: use a compressor of its own.
        Err(_) => with(&mut Vec::new()),
    })
}

fn new_compress(level: u32, window_bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::new(level), false, window_bits.clamp(9, 15))
}

/// A connection's compressor for what it sends.
pub(crate) struct Deflater {
    level: u32,
    window_bits: u8,
    min_size: usize,
    /// With context takeover: the compressor kept between messages (made on the first one).
    takeover: Option<Option<Box<Compress>>>,
}

impl fmt::Debug for Deflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deflater")
            .field("level", &self.level)
            .field("window_bits", &self.window_bits)
            .field("takeover", &self.takeover.is_some())
            .finish()
    }
}

impl Deflater {
    pub(crate) fn new(negotiated: &Negotiated, server: bool) -> Self {
        let out = negotiated.outgoing(server);
        Self {
            level: negotiated.level,
            window_bits: out.window_bits,
            min_size: negotiated.min_size,
            takeover: (!out.no_takeover).then_some(None),
        }
    }

    /// The compressed message (without its tail), or `None` to send it as it is.
    pub(crate) fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if data.len() < self.min_size {
            return None;
        }
        let (level, window_bits) = (self.level, self.window_bits);
        match &mut self.takeover {
            // With context takeover the history must stay in step with what the peer saw:
            // the compressed form is always sent.
            Some(slot) => {
                let engine = slot.get_or_insert_with(|| Box::new(new_compress(level, window_bits)));
                let mut out = Vec::with_capacity(data.len() / 2 + 64);
                let start = engine.total_in();
                loop {
                    let consumed = (engine.total_in() - start) as usize;
                    if out.len() == out.capacity() {
                        out.reserve(out.capacity().max(64));
                    }
                    let status =
                        engine.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync);
                    let consumed = (engine.total_in() - start) as usize;
                    match status {
                        Ok(_) if consumed == data.len() && out.len() < out.capacity() => break,
                        Ok(_) => {}
                        Err(_) => return None,
                    }
                }
                if out.ends_with(&TAIL) {
                    out.truncate(out.len() - TAIL.len());
                }
                Some(out)
            }
            None => compress_alone(self.level, self.window_bits, data),
        }
    }

    /// Whether every message is compressed on its own, so a shared compressed form may be
    /// used instead of [`compress`](Self::compress).
    pub(crate) fn shares(&self) -> bool {
        self.takeover.is_none()
    }

    pub(crate) fn min_size(&self) -> usize {
        self.min_size
    }

    pub(crate) fn key(&self) -> (u32, u8) {
        (self.level, self.window_bits)
    }
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// Not a valid deflate stream.
    Corrupt,
    /// It inflates past the message size limit.
    TooBig,
}

/// A connection's inflater for what it receives.
pub(crate) struct Inflater {
    /// With context takeover: the inflater kept between messages (made on the first one).
    takeover: Option<Option<Box<Decompress>>>,
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflater")
            .field("takeover", &self.takeover.is_some())
            .finish()
    }
}

impl Inflater {
    pub(crate) fn new(negotiated: &Negotiated, server: bool) -> Self {
        let incoming = negotiated.incoming(server);
        Self {
            takeover: (!incoming.no_takeover).then_some(None),
        }
    }

    /// Inflates one whole message into `out` (cleared first), refusing to produce more than
    /// `limit` bytes.
    pub(crate) fn inflate(
        &mut self,
        data: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        out.clear();
        match &mut self.takeover {
            Some(slot) => {
                let engine = slot.get_or_insert_with(|| Box::new(Decompress::new(false)));
                run_inflate(engine, data, limit, out)
            }
            None => INFLATER.with(|cell| {
                let Ok(mut slot) = cell.try_borrow_mut() else {
                    return run_inflate(&mut Decompress::new(false), data, limit, out);
                };
                let engine = slot.get_or_insert_with(|| Decompress::new(false));
                let result = run_inflate(engine, data, limit, out);
                engine.reset(false);
                result
            }),
        }
    }
}

fn run_inflate(
    engine: &mut Decompress,
    data: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), InflateError> {
    for (is_tail, input) in [(false, data), (true, &TAIL[..])] {
        let start = engine.total_in();
        loop {
            let consumed = (engine.total_in() - start) as usize;
            // Never more room than the limit allows (plus one byte, to see it exceeded),
            // whatever capacity the buffer has from earlier messages.
            let at = out.len();
            let step = (limit + 1 - at).min((at + 4 * data.len()).clamp(256, 64 << 10));
            out.resize(at + step, 0);
            let before = engine.total_out();
            let status =
                engine.decompress(&input[consumed..], &mut out[at..], FlushDecompress::Sync);
            let produced = (engine.total_out() - before) as usize;
            out.truncate(at + produced);
            let status = status.map_err(|_| InflateError::Corrupt)?;
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            let consumed = (engine.total_in() - start) as usize;
            let room = produced < step;
            match status {
                // A final block ends the message (and its context): anything but the tail
                // after it is not deflate.
                Status::StreamEnd => {
                    engine.reset(false);
                    let rest = &input[consumed..];
                    return if is_tail || rest.is_empty() {
                        Ok(())
                    } else {
                        Err(InflateError::Corrupt)
                    };
                }
                _ if consumed == input.len() && room => break,
                Status::BufError if room => return Err(InflateError::Corrupt),
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(config: &Deflate, header: &str) -> Option<(Negotiated, String)> {
        negotiate(config, [header])
    }

    #[test]
    fn a_browser_offer_is_accepted_without_context_takeover() {
        let (agreed, answer) = server(
            &Deflate::new(),
            "permessage-deflate; client_max_window_bits",
        )
        .unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert!(agreed.server_no_context_takeover && agreed.client_no_context_takeover);
        assert_eq!(agreed.shared_key(), Some((1, 15)));
    }

    #[test]
    fn offers_are_tried_in_order() {
        // The first has a parameter we do not know, the second a window zlib cannot do.
        let (agreed, answer) = server(
            &Deflate::new(),
            "permessage-deflate; foo, permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10",
        )
        .unwrap();
        assert_eq!(agreed.server_max_window_bits, 10);
        assert!(answer.ends_with("server_max_window_bits=10"), "{answer}");
        assert!(server(&Deflate::new(), "x-webkit-deflate-frame").is_none());
        assert!(server(&Deflate::disabled(), "permessage-deflate").is_none());
        assert!(server(
            &Deflate::new(),
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover"
        )
        .is_none());
    }

    #[test]
    fn context_takeover_when_configured() {
        let config = Deflate::new()
            .server_no_context_takeover(false)
            .client_no_context_takeover(false);
        let (agreed, answer) = server(&config, "permessage-deflate").unwrap();
        assert_eq!(answer, "permessage-deflate");
        assert_eq!(agreed.shared_key(), None);
        // The client may still ask the server not to take over.
        let (agreed, _) =
            server(&config, "permessage-deflate; server_no_context_takeover").unwrap();
        assert!(agreed.server_no_context_takeover);
    }

    #[test]
    fn the_client_checks_the_answer() {
        let config = Deflate::new();
        assert_eq!(
            offer(&config).unwrap(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"
        );
        let agreed = accept(
            &config,
            ["permessage-deflate; server_no_context_takeover; client_max_window_bits=10"],
        )
        .unwrap()
        .unwrap();
        assert_eq!(agreed.client_max_window_bits, 10);
        assert!(accept(&config, ["x-foo"])
            .unwrap_err()
            .contains("not offered"));
        assert!(accept(&Deflate::disabled(), ["permessage-deflate"]).is_err());
        assert!(accept(&config, ["permessage-deflate; server_max_window_bits=99"]).is_err());
        assert_eq!(accept(&config, []).unwrap(), None);
    }

    #[test]
    fn messages_round_trip_and_bombs_are_stopped() {
        let (agreed, _) = server(&Deflate::new().min_size(0), "permessage-deflate").unwrap();
        let mut deflater = Deflater::new(&agreed, true);
        let mut inflater = Inflater::new(&agreed, false);
        let text = "{\"text\":\"hello hello hello hello hello\"}".repeat(20);
        let compressed = deflater.compress(text.as_bytes()).unwrap();
        assert!(compressed.len() < text.len() / 4, "{}", compressed.len());
        let mut out = Vec::new();
        inflater.inflate(&compressed, 1 << 20, &mut out).unwrap();
        assert_eq!(out, text.as_bytes());
        // The same bytes as the shared compressor makes: broadcasts can share them.
        assert_eq!(compress_alone(1, 15, text.as_bytes()).unwrap(), compressed);
        // Inflating past the limit stops there.
        let zeros = compress_alone(9, 15, &vec![0; 1 << 20]).unwrap();
        assert!(zeros.len() < 2048);
        assert_eq!(
            inflater.inflate(&zeros, 64 << 10, &mut out),
            Err(InflateError::TooBig)
        );
        assert!(out.len() <= (64 << 10) + 1);
        assert_eq!(
            inflater.inflate(&[0xFF, 0xFF, 0xFF], 1 << 20, &mut out),
            Err(InflateError::Corrupt)
        );
        // Incompressible data is sent as it is.
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert!(compress_alone(1, 15, &noise).is_none());
    }

    #[test]
    fn context_takeover_keeps_history() {
        let config = Deflate::new()
            .min_size(0)
            .server_no_context_takeover(false)
            .client_no_context_takeover(false);
        let (agreed, _) = server(&config, "permessage-deflate").unwrap();
        let mut deflater = Deflater::new(&agreed, true);
        let mut inflater = Inflater::new(&agreed, false);
        let message = b"{\"price\": 101.25, \"symbol\": \"CRMS\"}";
        let first = deflater.compress(message).unwrap();
        let second = deflater.compress(message).unwrap();
        assert!(
            second.len() < first.len(),
            "{} vs {}",
            second.len(),
            first.len()
        );
        let mut out = Vec::new();
        inflater.inflate(&first, 1024, &mut out).unwrap();
        assert_eq!(out, message);
        inflater.inflate(&second, 1024, &mut out).unwrap();
        assert_eq!(out, message);
    }

    #[test]
    fn a_smaller_window_asked_for_is_the_window_used() {
        // A peer that can only keep 512 bytes of history must be able to inflate what we send.
        let (agreed, answer) = server(
            &Deflate::new().min_size(0).level(6),
            "permessage-deflate; server_max_window_bits=9",
        )
        .unwrap();
        assert!(answer.contains("server_max_window_bits=9"), "{answer}");
        let mut deflater = Deflater::new(&agreed, true);
        // Repeats 1 KiB apart: a 32 KiB window would refer back past 512 bytes.
        let block: Vec<u8> = (0..1024u32).map(|i| (i * 7 % 251) as u8).collect();
        let data = block.repeat(8);
        let compressed = deflater.compress(&data).unwrap();
        let mut small = Decompress::new_with_window_bits(false, 9);
        let mut out = Vec::new();
        run_inflate(&mut small, &compressed, 1 << 20, &mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn window_bits_are_checked() {
        assert!(Deflate::new().server_max_window_bits(8).is_err());
        assert_eq!(
            Deflate::new().client_max_window_bits(16).unwrap_err().to_string(),
            "client_max_window_bits must be 9 to 15 (zlib cannot make raw deflate streams with a 256-byte window), not 16"
        );
    }
}
