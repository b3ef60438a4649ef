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
    Inflater::default().decompress(data, max_bytes)
}

/// The output a payload's first allocation holds: a gzip member says its
/// size in its last four bytes (ISIZE, the size of the last member only,
/// so a hint), bounded by deflate's largest ratio (about 1,032 to 1) so a
/// hostile trailer cannot ask for more (one byte more than it says, so the
/// end of the stream is seen without growing); otherwise four times the
/// input, which small JSON records do not outgrow.
fn output_hint(codec: Codec, data: &[u8]) -> usize {
    match (codec, data.last_chunk::<4>()) {
        (Codec::Gzip, Some(isize)) => (u32::from_le_bytes(*isize) as usize)
            .saturating_add(1)
            .min(data.len().saturating_mul(1032)),
        _ => data.len().saturating_mul(4),
    }
}

/// One inflate state kept across the payloads of an invocation, reset per
/// payload instead of built anew: building one allocates deflate's 32 KiB
/// window and its tables, which cost more than inflating a small record.
/// gzip members are read around a raw deflate stream (their header and
/// CRC-32 trailer checked here, as flate2's `MultiGzDecoder` checks them);
/// zlib streams keep their header and Adler-32 to the inflater.
#[derive(Debug, Default)]
pub struct Inflater {
    state: Option<flate2::Decompress>,
}

impl Inflater {
    /// As [`decompress`], reusing this inflate state for gzip and zlib.
    pub fn decompress<'a>(
        &mut self,
        data: &'a [u8],
        max_bytes: usize,
    ) -> Result<Cow<'a, [u8]>, DecompressError> {
        match Codec::detect(data) {
            Some(codec @ (Codec::Gzip | Codec::Zlib)) => {
                let mut out = Vec::with_capacity(output_hint(codec, data).min(max_bytes + 1));
                let result = match codec {
                    Codec::Gzip => self.gunzip(data, &mut out, max_bytes),
                    _ => self.inflate(data, true, &mut out, max_bytes).map(drop),
                };
                match result {
                    Ok(()) => Ok(Cow::Owned(out)),
                    Err(Inflate::TooLarge) => Err(DecompressError::TooLarge {
                        limit: max_bytes,
                        codec: Some(codec),
                    }),
                    Err(Inflate::Corrupt(message)) => {
                        Err(DecompressError::Corrupt { codec, message })
                    }
                }
            }
            _ => decompress_once(data, max_bytes),
        }
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
            if out.len() > max_bytes {
                return Err(Inflate::TooLarge);
            }
            if out.len() == out.capacity() {
                // Room doubles, up to one byte past the limit: enough to
                // tell a payload that is too large.
                let want = (out.capacity() * 2).max(4096).min(max_bytes + 1);
                out.reserve_exact(want - out.len());
            }
            let (read, written) = (state.total_in(), out.len());
            let status = state
                .decompress_vec(&input[read as usize..], out, flate2::FlushDecompress::None)
                .map_err(|e| Inflate::Corrupt(e.to_string()))?;
            if status == flate2::Status::StreamEnd {
                return if out.len() > max_bytes {
                    Err(Inflate::TooLarge)
                } else {
                    Ok(state.total_in() as usize)
                };
            }
            if state.total_in() == read && out.len() == written {
                return Err(Inflate::Corrupt(
                    "the compressed stream ends before its end marker".into(),
                ));
            }
        }
    }
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

/// [`decompress`] for the codecs with no state kept between payloads.
fn decompress_once(data: &[u8], max_bytes: usize) -> Result<Cow<'_, [u8]>, DecompressError> {
    let Some(codec) = Codec::detect(data) else {
        if data.len() > max_bytes {
            return Err(DecompressError::TooLarge {
                limit: max_bytes,
                codec: None,
            });
        }
        return Ok(Cow::Borrowed(data));
    };
    // The `bufread` decoders read the slice in place; the `read` ones would
    // each allocate a 32 KiB buffer per record to copy it through.
    let reader: Box<dyn Read + '_> = match codec {
        Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(data)),
        Codec::Zlib => Box::new(flate2::bufread::ZlibDecoder::new(data)),
        Codec::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(data).map_err(|e| corrupt(codec, &e))?,
        ),
        Codec::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(data)),
        Codec::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(data)),
        Codec::SnappyFramed => Box::new(snap::read::FrameDecoder::new(data)),
    };
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(max_bytes + 1));
    reader
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(codec, &e))?;
    if out.len() > max_bytes {
        return Err(DecompressError::TooLarge {
            limit: max_bytes,
            codec: Some(codec),
        });
    }
    Ok(Cow::Owned(out))
}

fn corrupt(codec: Codec, e: &std::io::Error) -> DecompressError {
    DecompressError::Corrupt {
        codec,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TEXT: &[u8] = b"{\"a\":1}\n{\"a\":2}\n";

    #[test]
    fn a_gzip_trailer_sizes_the_output_only_as_a_bounded_hint() {
        let packed = gzip(&vec![b'x'; 10_000]);
        assert_eq!(output_hint(Codec::Gzip, &packed), 10_001);
        // A trailer that claims 4 GiB asks for deflate's largest ratio at
        // most, one that claims nothing for nothing; either way the payload
        // is inflated (growing as it needs) and refused by the size check.
        for claim in [u32::MAX, 0] {
            let mut lying = packed.clone();
            let at = lying.len() - 4;
            lying[at..].copy_from_slice(&claim.to_le_bytes());
            assert!(output_hint(Codec::Gzip, &lying) <= lying.len() * 1032);
            assert!(matches!(
                Inflater::default().decompress(&lying, 1 << 20),
                Err(DecompressError::Corrupt { .. })
            ));
        }
        assert_eq!(output_hint(Codec::Zlib, &packed), packed.len() * 4);
        assert_eq!(output_hint(Codec::Gzip, &[0x1f, 0x8b]), 8);
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
        // A payload's outcome must not depend on the one before it: a good
        // one after a truncated, a bomb or a corrupt one inflates in full.
        let mut inflater = Inflater::default();
        let gz = gzip(TEXT);
        let zl = all_codecs(TEXT).remove(1).1;
        let bomb = gzip(&vec![b' '; 1024 * 1024]);
        let mut flipped = gz.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0xff;
        for _ in 0..3 {
            for bad in [
                &gz[..gz.len() - 3],
                &bomb[..],
                &flipped[..],
                &zl[..zl.len() / 2],
            ] {
                assert!(inflater.decompress(bad, 1024).is_err());
                assert_eq!(inflater.decompress(&gz, 1024).unwrap().as_ref(), TEXT);
                assert_eq!(inflater.decompress(&zl, 1024).unwrap().as_ref(), TEXT);
            }
        }
        assert_eq!(inflater.decompress(TEXT, 1024).unwrap().as_ref(), TEXT);
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
