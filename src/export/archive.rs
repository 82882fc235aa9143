//! The archive being written: [`Sink`] puts entries into a zip or tar stream over [`Guarded`],
//! the caller's output, which is cut off for good once an export fails, so a failed export never
//! ends in a valid-looking archive; [`Spool`] lets the zip writer seek on a plain stream.

use std::cell::Cell;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::rc::Rc;

use chrono::{DateTime, Datelike, Timelike, Utc};

use super::*;

/// Whether an entry is worth deflating: images are already compressed, text is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compress {
    Yes,
    No,
}

/// The archive being written: zip or tar over the guarded output.
pub(super) struct Sink<W: Write> {
    kind: SinkKind<W>,
    /// Entry modification time for tar: seconds since the epoch.
    mtime: u64,
    /// Entry modification time for zip (MS-DOS time, 1980..=2107, no time zone: UTC is written).
    zip_time: zip::DateTime,
}

pub(super) enum SinkKind<W: Write> {
    // Boxed: the zip writer is large and there is one per export.
    Zip(Box<zip::ZipWriter<Spool<Guarded<W>>>>),
    Tar(tar::Builder<Guarded<W>>),
}

impl<W: Write> Sink<W> {
    pub(super) fn new(out: Guarded<W>, archive: ArchiveFormat, created: DateTime<Utc>) -> Self {
        let kind = match archive {
            ArchiveFormat::Zip => {
                let mut zip = zip::ZipWriter::new(Spool::new(out));
                // With this the writer never seeks back into a finished entry, which is what
                // lets `Spool` hand finished entries to the output (zip 2 has no streaming
                // writer of its own).
                zip.set_flush_on_finish_file(true);
                SinkKind::Zip(Box::new(zip))
            }
            ArchiveFormat::Tar => SinkKind::Tar(tar::Builder::new(out)),
        };
        let zip_time = u16::try_from(created.year())
            .ok()
            .and_then(|year| {
                zip::DateTime::from_date_and_time(
                    year,
                    created.month() as u8,
                    created.day() as u8,
                    created.hour() as u8,
                    created.minute() as u8,
                    created.second().min(59) as u8,
                )
                .ok()
            })
            .unwrap_or_default();
        Sink {
            kind,
            mtime: u64::try_from(created.timestamp()).unwrap_or(0),
            zip_time,
        }
    }

    pub(super) fn add(
        &mut self,
        name: &str,
        data: &[u8],
        compress: Compress,
    ) -> Result<(), ExportError> {
        match &mut self.kind {
            SinkKind::Zip(zip) => {
                let method = match compress {
                    Compress::Yes => zip::CompressionMethod::Deflated,
                    Compress::No => zip::CompressionMethod::Stored,
                };
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(method)
                    .last_modified_time(self.zip_time)
                    .unix_permissions(0o644)
                    // Sizes are known up front, so zip64 fields are added only where needed.
                    .large_file(data.len() as u64 >= u64::from(u32::MAX));
                zip.start_file(name, options)?;
                zip.write_all(data)?;
            }
            SinkKind::Tar(tar) => {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                header.set_mode(0o644);
                header.set_mtime(self.mtime);
                header.set_uid(0);
                header.set_gid(0);
                // Sets the (GNU long) name and the checksum.
                tar.append_data(&mut header, name, data)?;
            }
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Result<(), ExportError> {
        let mut out = match self.kind {
            SinkKind::Zip(zip) => zip.finish()?.into_inner()?,
            SinkKind::Tar(tar) => tar.into_inner()?,
        };
        out.flush()?;
        Ok(())
    }
}

/// The caller's output, cut off for good once the export fails (see the module invariants).
///
/// After the cut, writes and flushes succeed without reaching the output: the zip and tar
/// writers try to finish the archive when dropped, and an error there would only be printed
/// to stderr by zip's `Drop`. The first failing write still returns its error.
pub(super) struct Guarded<W> {
    pub(super) inner: W,
    pub(super) cut: Rc<Cell<bool>>,
}

impl<W: Write> Write for Guarded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cut.get() {
            return Ok(buf.len());
        }
        let result = self.inner.write(buf);
        if let Err(e) = &result
            && e.kind() != io::ErrorKind::Interrupted
        {
            self.cut.set(true);
        }
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.cut.get() {
            return Ok(());
        }
        let result = self.inner.flush();
        if result.is_err() {
            self.cut.set(true);
        }
        result
    }
}

/// Makes a plain writer look seekable to `zip::ZipWriter`, which writes each entry's header,
/// then its data, then seeks back to fill in the header's CRC and sizes.
///
/// Bytes are kept from the last flush on; seeks may move anywhere within them, and `flush`
/// hands everything before the current position to the output. The zip writer flushes at the
/// end of each entry (`set_flush_on_finish_file`) and never seeks before that point again, so
/// at most one entry (plus, at the end, the central directory) is held in memory.
pub(super) struct Spool<W> {
    inner: W,
    /// Bytes already handed to `inner`.
    committed: u64,
    /// Bytes after `committed`, not yet handed on.
    buf: Vec<u8>,
    /// Write position within `buf`.
    pos: usize,
}

impl<W: Write> Spool<W> {
    pub(super) fn new(inner: W) -> Self {
        Spool {
            inner,
            committed: 0,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Hands every held byte on and returns the output.
    fn into_inner(mut self) -> io::Result<W> {
        self.pos = self.buf.len();
        self.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Spool<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let end = self.pos + data.len();
        if end > self.buf.len() {
            self.buf.resize(end, 0);
        }
        self.buf[self.pos..end].copy_from_slice(data);
        self.pos = end;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.write_all(&self.buf[..self.pos])?;
        self.buf.drain(..self.pos);
        self.committed += self.pos as u64;
        self.pos = 0;
        self.inner.flush()
    }
}

impl<W: Write> Seek for Spool<W> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let end = self.committed + self.buf.len() as u64;
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => end.checked_add_signed(d),
            SeekFrom::Current(d) => (self.committed + self.pos as u64).checked_add_signed(d),
        };
        match target {
            Some(t) if (self.committed..=end).contains(&t) => {
                self.pos = (t - self.committed) as usize;
                Ok(t)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "zip writer sought outside the bytes not yet streamed",
            )),
        }
    }
}

/// zip 2 offers `set_flush_on_finish_file` only on readable writers, for the sake of
/// `deep_copy_file`, which this module never calls; reading fails.
impl<W> Read for Spool<W> {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a streamed zip cannot be read back",
        ))
    }
}
