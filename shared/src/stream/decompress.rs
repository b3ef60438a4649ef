//! Undoing compression of a record's payload, detected by its magic bytes.
//!
//! The codecs are those a Glue streaming source decompresses on its own
//! (gzip, bzip2, xz, zstd, framed snappy, deflate in its zlib wrapper).
//! A raw deflate stream has no magic bytes and so cannot be told from text;
//! producers must use the zlib wrapper for it.
//!
//! Every decoder is capped: a payload that inflates past `max_bytes` is
//! rejected after reading `max_bytes + 1` bytes, so a compression bomb costs
//! at most that much memory.

use std::borrow::Cow;
use std::io::Read;

/// A compression format recognised by its leading bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Gzip,
    Zlib,
    Zstd,
    Bzip2,
    Xz,
    SnappyFramed,
}

impl Codec {
    /// The codec's name as it appears in dead letters.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zlib => "zlib",
            Codec::Zstd => "zstd",
            Codec::Bzip2 => "bzip2",
            Codec::Xz => "xz",
            Codec::SnappyFramed => "snappy-framed",
        }
    }

    /// True for the codecs whose magic bytes plain data can begin with:
    /// zlib's two-byte header (21 printable pairs, `80,` and `x^` among
    /// them, pass its checksum) and bzip2's printable `BZh1`..`BZh9`. A
    /// payload detected as one of these is compressed only if it decodes.
    pub fn magic_is_weak(self) -> bool {
        matches!(self, Codec::Zlib | Codec::Bzip2)
    }

    /// Detects the codec of a payload, `None` for anything uncompressed.
    pub fn detect(data: &[u8]) -> Option<Codec> {
        const SNAPPY_STREAM_ID: &[u8] = b"\xff\x06\x00\x00sNaPpY";
        match data {
            [0x1f, 0x8b, ..] => Some(Codec::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Codec::Zstd),
            [b'B', b'Z', b'h', b'1'..=b'9', ..] => Some(Codec::Bzip2),
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Some(Codec::Xz),
            d if d.starts_with(SNAPPY_STREAM_ID) => Some(Codec::SnappyFramed),
            // zlib: CM = 8 (deflate), window <= 32 KiB, and the header checksum.
            [cmf, flg, ..]
                if cmf & 0x0f == 8
                    && cmf >> 4 <= 7
                    && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0 =>
            {
                Some(Codec::Zlib)
            }
            _ => None,
        }
    }
}

/// Why a payload could not be turned into bytes to parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecompressError {
    #[error("payload is larger than {limit} bytes{}", codec.map(|c| format!(" after {} decompression", c.name())).unwrap_or_default())]
    TooLarge { limit: usize, codec: Option<Codec> },
    #[error("{} payload could not be decompressed: {message}", codec.name())]
    Corrupt { codec: Codec, message: String },
}

/// Returns the payload's bytes with any compression undone, borrowing when
/// there was none. A batch's payloads go through one [`Inflater`] instead.
pub fn decompress(data: &[u8], max_bytes: usize) -> Result<Cow<'_, [u8]>, DecompressError> {
    let mut inflater = Inflater::default();
    Ok(match inflater.decompress(data, max_bytes)?.is_some() {
        true => Cow::Owned(std::mem::take(&mut inflater.out)),
        false => Cow::Borrowed(data),
    })
}

/// Room past the end of a deflate stream's output that lets zlib-rs stay
/// in its fast loop to the stream's end: the loop runs while 258 bytes (the
/// longest match) fit in the output. Sized exactly, a small record's whole
/// inflate runs in the slow loop (a seventh more instructions per reading).
const INFLATE_SLACK: usize = 258;

/// The output a payload's first allocation holds: a gzip member says its
/// size in its last four bytes (ISIZE, the size of the last member only,
/// so a hint), bounded by deflate's largest ratio (about 1,032 to 1) so a
/// hostile trailer cannot ask for more; otherwise four times the input,
/// which small JSON records do not outgrow. Deflate's output gets
/// [`INFLATE_SLACK`] more (which also lets the end of the stream be seen
/// without growing).
fn output_hint(codec: Codec, data: &[u8]) -> usize {
    match (codec, data.last_chunk::<4>()) {
        (Codec::Gzip, Some(isize)) => (u32::from_le_bytes(*isize) as usize)
            .min(data.len().saturating_mul(1032))
            .saturating_add(INFLATE_SLACK),
        (Codec::Zlib, _) => data.len().saturating_mul(4).saturating_add(INFLATE_SLACK),
        _ => data.len().saturating_mul(4),
    }
}

/// What an invocation keeps to undo compression, payload after payload:
/// one output buffer, and the gzip/zlib and zstd states, each reset per
/// payload instead of built anew (building an inflate state allocates
/// deflate's 32 KiB window and its tables, a zstd context more, both of
/// which cost more than inflating a small record). gzip members are read
/// around a raw deflate stream (their header and CRC-32 trailer checked
/// here, as flate2's `MultiGzDecoder` checks them); zlib streams keep their
/// header and Adler-32 to the inflater. bzip2, xz and framed snappy have no
/// state their crates can reset; each payload builds its own decoder.
#[derive(Default)]
pub struct Inflater {
    state: Option<flate2::Decompress>,
    zstd: Option<zstd::stream::raw::Decoder<'static>>,
    out: Vec<u8>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("buffer_capacity", &self.out.capacity())
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// Undoes the payload's compression into this inflater's buffer:
    /// `Some` of the bytes (valid until the next payload), or `None` when
    /// the payload is not compressed and is to be read as it is.
    pub fn decompress<'a>(
        &'a mut self,
        data: &[u8],
        max_bytes: usize,
    ) -> Result<Option<&'a [u8]>, DecompressError> {
        let Some(codec) = Codec::detect(data) else {
            if data.len() > max_bytes {
                return Err(DecompressError::TooLarge {
                    limit: max_bytes,
                    codec: None,
                });
            }
            return Ok(None);
        };
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.reserve(output_hint(codec, data).min(max_bytes + 1));
        let result = match codec {
            Codec::Gzip => self.gunzip(data, &mut out, max_bytes),
            Codec::Zlib => self.inflate(data, true, &mut out, max_bytes).map(drop),
            Codec::Zstd => self.unzstd(data, &mut out, max_bytes),
            Codec::Bzip2 | Codec::Xz | Codec::SnappyFramed => {
                decompress_once(codec, data, &mut out, max_bytes)
            }
        };
        self.out = out;
        match result {
            Ok(()) if self.out.len() > max_bytes => Err(Inflate::TooLarge),
            other => other,
        }
        .map_err(|e| match e {
            Inflate::TooLarge => DecompressError::TooLarge {
                limit: max_bytes,
                codec: Some(codec),
            },
            Inflate::Corrupt(message) => DecompressError::Corrupt { codec, message },
        })?;
        Ok(Some(&self.out))
    }

    /// Every member of a gzip payload, appended to `out`.
    fn gunzip(&mut self, data: &[u8], out: &mut Vec<u8>, max_bytes: usize) -> Result<(), Inflate> {
        let mut rest = data;
        loop {
            let header = gzip_header_len(rest)?;
            let start = out.len();
            let body = self.inflate(&rest[header..], false, out, max_bytes)?;
            let trailer = rest
                .get(header + body..header + body + 8)
                .ok_or_else(|| Inflate::Corrupt("gzip trailer is cut short".into()))?;
            let (crc, size) = trailer.split_at(4);
            let member = &out[start..];
            if crc32fast::hash(member).to_le_bytes() != crc {
                return Err(Inflate::Corrupt("gzip CRC-32 does not match".into()));
            }
            if (member.len() as u32).to_le_bytes() != size {
                return Err(Inflate::Corrupt("gzip size does not match".into()));
            }
            rest = &rest[header + body + 8..];
            if rest.is_empty() {
                return Ok(());
            }
        }
    }

    /// Inflates one deflate stream from the start of `input` (in its zlib
    /// wrapper, or raw) into `out`, never past `max_bytes` in all; returns
    /// the input bytes the stream took.
    fn inflate(
        &mut self,
        input: &[u8],
        zlib: bool,
        out: &mut Vec<u8>,
        max_bytes: usize,
    ) -> Result<usize, Inflate> {
        let state = match &mut self.state {
            Some(s) => {
                s.reset(zlib);
                s
            }
            none => none.insert(flate2::Decompress::new(zlib)),
        };
        loop {
            let (read, written) = (state.total_in(), out.len());
            make_room(out, max_bytes)?;
            let status = state
                .decompress_vec(&input[read as usize..], out, flate2::FlushDecompress::None)
                .map_err(|e| Inflate::Corrupt(e.to_string()))?;
            if status == flate2::Status::StreamEnd {
                return Ok(state.total_in() as usize);
            }
            if state.total_in() == read && out.len() == written {
                return Err(ended_early());
            }
        }
    }

    /// Every zstd frame of a payload (skippable frames skipped), appended
    /// to `out`.
    fn unzstd(&mut self, data: &[u8], out: &mut Vec<u8>, max_bytes: usize) -> Result<(), Inflate> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        let corrupt = |e: std::io::Error| Inflate::Corrupt(e.to_string());
        let decoder = match &mut self.zstd {
            Some(d) => {
                d.reinit().map_err(corrupt)?;
                d
            }
            none => none.insert(zstd::stream::raw::Decoder::new().map_err(corrupt)?),
        };
        let mut input = InBuffer::around(data);
        loop {
            let (read, written) = (input.pos(), out.len());
            make_room(out, max_bytes)?;
            let mut output = OutBuffer::around_pos(out, written);
            // 0 once a frame is decoded and flushed; the next call starts
            // the next frame.
            let needs = decoder.run(&mut input, &mut output).map_err(corrupt)?;
            if needs == 0 && input.pos() == data.len() {
                return Ok(());
            }
            if input.pos() == read && out.len() == written {
                return Err(ended_early());
            }
        }
    }
}

/// Grows `out` when it is full, doubling, up to one byte past the limit:
/// enough to tell a payload that is too large. Refuses one that already is.
fn make_room(out: &mut Vec<u8>, max_bytes: usize) -> Result<(), Inflate> {
    if out.len() > max_bytes {
        return Err(Inflate::TooLarge);
    }
    if out.len() == out.capacity() {
        let want = (out.capacity() * 2).max(4096).min(max_bytes + 1);
        out.reserve_exact(want - out.len());
    }
    Ok(())
}

fn ended_early() -> Inflate {
    Inflate::Corrupt("the compressed stream ends before its end marker".into())
}

/// Why one deflate stream could not be inflated.
enum Inflate {
    TooLarge,
    Corrupt(String),
}

/// The length of the gzip member header at the start of `data` (RFC 1952:
/// the fixed ten bytes, then the optional extra field, name, comment and
/// header CRC its flags announce).
fn gzip_header_len(data: &[u8]) -> Result<usize, Inflate> {
    const FHCRC: u8 = 0x02;
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    const FCOMMENT: u8 = 0x10;
    let bad = |what: &str| Inflate::Corrupt(format!("invalid gzip header: {what}"));
    let [0x1f, 0x8b, method, flags, ..] = data else {
        return Err(bad("no gzip magic bytes"));
    };
    if *method != 8 {
        return Err(bad("compression method is not deflate"));
    }
    if flags & 0xe0 != 0 {
        return Err(bad("reserved flag bits are set"));
    }
    let mut at = 10;
    if data.len() < at {
        return Err(bad("cut short"));
    }
    if flags & FEXTRA != 0 {
        let len = data
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
            .ok_or_else(|| bad("cut short"))?;
        at += 2 + len;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let end = data
                .get(at..)
                .and_then(|d| d.iter().position(|&b| b == 0))
                .ok_or_else(|| bad("cut short"))?;
            at += end + 1;
        }
    }
    if flags & FHCRC != 0 {
        let stored = data.get(at..at + 2).ok_or_else(|| bad("cut short"))?;
        let crc = (crc32fast::hash(&data[..at]) & 0xffff) as u16;
        if crc.to_le_bytes() != stored {
            return Err(bad("header CRC does not match"));
        }
        at += 2;
    }
    if data.len() < at {
        return Err(bad("cut short"));
    }
    Ok(at)
}

/// The codecs with no state kept between payloads, read into `out`. The
/// `bufread` decoders read the slice in place; the `read` ones would each
/// allocate a 32 KiB buffer per record to copy it through.
fn decompress_once(
    codec: Codec,
    data: &[u8],
    out: &mut Vec<u8>,
    max_bytes: usize,
) -> Result<(), Inflate> {
    let reader: Box<dyn Read + '_> = match codec {
        Codec::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(data)),
        Codec::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(data)),
        // Framed snappy, the one other codec sent here.
        _ => Box::new(snap::read::FrameDecoder::new(data)),
    };
    reader
        .take(max_bytes as u64 + 1)
        .read_to_end(out)
        .map_err(|e| Inflate::Corrupt(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TEXT: &[u8] = b"{\"a\":1}\n{\"a\":2}\n";

    #[test]
    fn a_gzip_trailer_sizes_the_output_only_as_a_bounded_hint() {
        let packed = gzip(&vec![b'x'; 10_000]);
        assert_eq!(output_hint(Codec::Gzip, &packed), 10_000 + INFLATE_SLACK);
        // A trailer that claims 4 GiB asks for deflate's largest ratio at
        // most, one that claims nothing for nothing; either way the payload
        // is inflated (growing as it needs) and refused by the size check.
        for claim in [u32::MAX, 0] {
            let mut lying = packed.clone();
            let at = lying.len() - 4;
            lying[at..].copy_from_slice(&claim.to_le_bytes());
            assert!(output_hint(Codec::Gzip, &lying) <= lying.len() * 1032 + INFLATE_SLACK);
            assert!(matches!(
                Inflater::default().decompress(&lying, 1 << 20),
                Err(DecompressError::Corrupt { .. })
            ));
        }
        assert_eq!(
            output_hint(Codec::Zlib, &packed),
            packed.len() * 4 + INFLATE_SLACK
        );
        assert_eq!(output_hint(Codec::Gzip, &[0x1f, 0x8b]), 8);
        assert_eq!(output_hint(Codec::Zstd, &packed), packed.len() * 4);
    }

    fn gzip(d: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(d).unwrap();
        e.finish().unwrap()
    }

    fn all_codecs(d: &[u8]) -> Vec<(Codec, Vec<u8>)> {
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        zl.write_all(d).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(d).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(d).unwrap();
        let mut sn = snap::write::FrameEncoder::new(Vec::new());
        sn.write_all(d).unwrap();
        vec![
            (Codec::Gzip, gzip(d)),
            (Codec::Zlib, zl.finish().unwrap()),
            (Codec::Zstd, zstd::encode_all(d, 3).unwrap()),
            (Codec::Bzip2, bz.finish().unwrap()),
            (Codec::Xz, xz.finish().unwrap()),
            (Codec::SnappyFramed, sn.into_inner().unwrap()),
        ]
    }

    #[test]
    fn every_codec_is_detected_and_undone() {
        for (codec, packed) in all_codecs(TEXT) {
            assert_eq!(Codec::detect(&packed), Some(codec), "{}", codec.name());
            assert_eq!(
                decompress(&packed, 1024).unwrap().as_ref(),
                TEXT,
                "{}",
                codec.name()
            );
        }
    }

    #[test]
    fn plain_json_is_not_mistaken_for_a_codec_and_is_borrowed() {
        assert_eq!(Codec::detect(TEXT), None);
        assert_eq!(Codec::detect(b"  {\"x\":1}"), None);
        assert!(matches!(decompress(TEXT, 1024).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn a_bomb_is_cut_at_the_limit() {
        let zeros = vec![b' '; 10 * 1024 * 1024];
        for (codec, packed) in all_codecs(&zeros) {
            assert_eq!(
                decompress(&packed, 64 * 1024),
                Err(DecompressError::TooLarge {
                    limit: 64 * 1024,
                    codec: Some(codec)
                }),
                "{}",
                codec.name()
            );
        }
        assert!(matches!(
            decompress(&zeros, 1024),
            Err(DecompressError::TooLarge { codec: None, .. })
        ));
    }

    #[test]
    fn truncated_streams_are_reported_as_corrupt() {
        for (codec, packed) in all_codecs(TEXT) {
            let cut = &packed[..packed.len() / 2];
            if Codec::detect(cut) != Some(codec) {
                continue; // too short to still carry the magic bytes
            }
            match decompress(cut, 1024) {
                Err(DecompressError::Corrupt { codec: c, .. }) => assert_eq!(c, codec),
                other => panic!("{}: expected corrupt, got {other:?}", codec.name()),
            }
        }
    }

    #[test]
    fn one_inflater_serves_a_batch_whatever_came_before() {
        // A payload's outcome must not depend on the one before it: every
        // codec's good payload, after a truncated, a bomb or a corrupt one
        // of any codec, decodes in full, and the buffer a large payload
        // grew still holds a small limit.
        let mut inflater = Inflater::default();
        let good = all_codecs(TEXT);
        // Bombs and truncated payloads fail; a flipped byte may not (zstd
        // and snappy frames carry no checksum by default), but leaves the
        // inflater as dirty.
        let mut bad: Vec<(Vec<u8>, bool)> = Vec::new();
        for (_, packed) in all_codecs(&vec![b' '; 1024 * 1024]) {
            bad.push((packed, true));
        }
        for (_, packed) in &good {
            bad.push((packed[..packed.len() - 3].to_vec(), true));
            let mut flipped = packed.clone();
            let mid = flipped.len() / 2;
            flipped[mid] ^= 0xff;
            bad.push((flipped, false));
        }
        for _ in 0..2 {
            for (b, fails) in &bad {
                let outcome = inflater.decompress(b, 1024).map(|o| o.map(<[u8]>::to_vec));
                assert!(!fails || outcome.is_err(), "{outcome:?}");
                for (codec, packed) in &good {
                    let got = inflater.decompress(packed, 1024).unwrap();
                    assert_eq!(got, Some(TEXT), "{} after a bad payload", codec.name());
                }
            }
        }
        let big = all_codecs(&vec![b'x'; 100_000]);
        for (codec, packed) in &big {
            assert_eq!(
                inflater
                    .decompress(packed, 100_000)
                    .unwrap()
                    .map(<[u8]>::len),
                Some(100_000)
            );
            assert_eq!(
                inflater.decompress(packed, 99_999),
                Err(DecompressError::TooLarge {
                    limit: 99_999,
                    codec: Some(*codec)
                }),
                "{}",
                codec.name()
            );
            assert_eq!(
                inflater.decompress(&good[0].1, TEXT.len() - 1),
                Err(DecompressError::TooLarge {
                    limit: TEXT.len() - 1,
                    codec: Some(Codec::Gzip)
                }),
                "gzip after {}",
                codec.name()
            );
        }
        assert_eq!(inflater.decompress(TEXT, 1024).unwrap(), None);
    }

    #[test]
    fn every_zstd_frame_is_decoded_and_bytes_after_the_last_are_corrupt() {
        let two = [
            zstd::encode_all(&b"{\"a\":1}\n"[..], 3).unwrap(),
            zstd::encode_all(&b"{\"a\":2}\n"[..], 19).unwrap(),
        ]
        .concat();
        let mut inflater = Inflater::default();
        assert_eq!(inflater.decompress(&two, 1024).unwrap(), Some(TEXT));
        let tail = [two.clone(), b"not zstd".to_vec()].concat();
        assert!(matches!(
            inflater.decompress(&tail, 1024),
            Err(DecompressError::Corrupt {
                codec: Codec::Zstd,
                ..
            })
        ));
        assert_eq!(inflater.decompress(&two, 1024).unwrap(), Some(TEXT));
    }

    #[test]
    fn room_grows_to_one_byte_past_any_limit_however_small() {
        // The invocation's budget can leave a payload only a few bytes;
        // growing the output must stop at the limit, not at a floor.
        let packed = gzip(&vec![b'x'; 300]);
        for limit in [0, 1, 7, 299] {
            assert_eq!(
                decompress(&packed, limit),
                Err(DecompressError::TooLarge {
                    limit,
                    codec: Some(Codec::Gzip)
                }),
                "limit {limit}"
            );
        }
        assert_eq!(decompress(&packed, 300).unwrap().len(), 300);
    }

    #[test]
    fn gzip_headers_with_every_optional_field_are_read_and_checked() {
        let mut e = flate2::GzBuilder::new()
            .extra(b"xx".to_vec())
            .filename("readings.json")
            .comment("a comment")
            .operating_system(3)
            .write(Vec::new(), flate2::Compression::default());
        e.write_all(TEXT).unwrap();
        let mut packed = e.finish().unwrap();
        assert_eq!(decompress(&packed, 1024).unwrap().as_ref(), TEXT);
        // A wrong CRC-32 in the trailer is corrupt.
        let n = packed.len();
        packed[n - 8] ^= 1;
        assert!(matches!(
            decompress(&packed, 1024),
            Err(DecompressError::Corrupt {
                codec: Codec::Gzip,
                ..
            })
        ));
        // So is a reserved flag bit.
        let mut reserved = gzip(TEXT);
        reserved[3] |= 0x80;
        assert!(decompress(&reserved, 1024).is_err());
    }

    #[test]
    fn every_gzip_member_is_inflated_and_output_past_four_times_the_input_grows() {
        // Concatenated members (what `cat a.gz b.gz` or a flushing producer
        // gives) are one payload, as gunzip reads them.
        let two = [gzip(b"{\"a\":1}\n"), gzip(b"{\"a\":2}\n")].concat();
        assert_eq!(decompress(&two, 1024).unwrap().as_ref(), TEXT);
        // 60 KiB of spaces inflate from well under 1 KiB: past the room
        // first made for them.
        let spaces = vec![b' '; 60 * 1024];
        for (codec, packed) in all_codecs(&spaces) {
            assert!(packed.len() * 4 < spaces.len(), "{}", codec.name());
            assert_eq!(
                decompress(&packed, 60 * 1024).unwrap().as_ref(),
                &spaces[..],
                "{}",
                codec.name()
            );
        }
        // A member followed by bytes that are not one is corrupt.
        let tail = [gzip(TEXT), b"not gzip".to_vec()].concat();
        assert!(matches!(
            decompress(&tail, 1024),
            Err(DecompressError::Corrupt {
                codec: Codec::Gzip,
                ..
            })
        ));
    }
}
