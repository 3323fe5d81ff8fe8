//! The second core in a build without the "overlap" feature: the same calls, made directly on
//! the caller's thread (the minimal build, where the threads' code does not fit the size
//! budget). The same items as `overlap.rs`, which this stands in for.

use crate::error::Error;
use std::io::{Read, Write};
use std::path::Path;

/// `produce` writing straight into `out`.
pub fn write_behind<T>(
    out: &mut (dyn Write + Send),
    out_path: &Path,
    produce: impl FnOnce(&mut (dyn Write + Send)) -> Result<T, Error>,
) -> Result<T, Error> {
    write_behind_from(out, out_path, &|| 1, produce)
}

/// `produce` writing straight into `out`.
pub fn write_behind_from<T>(
    out: &mut (dyn Write + Send),
    _out_path: &Path,
    _busy: &(dyn Fn() -> usize + Sync),
    produce: impl FnOnce(&mut (dyn Write + Send)) -> Result<T, Error>,
) -> Result<T, Error> {
    produce(out)
}

/// `consume` reading straight from `reader`.
pub fn read_ahead<T>(
    reader: &mut (dyn Read + Send),
    consume: impl FnOnce(&mut dyn Read) -> T,
) -> T {
    consume(reader)
}
