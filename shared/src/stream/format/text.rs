//! Splitting a text payload into its non-blank lines, for the line-based
//! formats.

/// The non-blank lines of a text (without their `\r`), with their index.
pub(crate) fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty())
        .enumerate()
}
