//! What rank 0 and a worker say to each other over their control connection: rank 0 sends
//! [`Order`]s, the worker answers each with a [`Reply`]. Frames are a tag byte, a length and
//! the payload; a batch travels as raw RGB, since both ends are on one machine.

use evolve_sdk::{Image, TrainBatch};
use std::io::{self, ErrorKind, Read, Write};
use std::path::PathBuf;

/// What rank 0 asks of a worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Order {
    /// Load the checkpoint in this folder (rank 0 is loading it too).
    Load(PathBuf),
    /// Take one training step on this share of the batch.
    Step(TrainBatch),
    /// Exit.
    Stop,
}

/// A worker's answer to an [`Order`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Done.
    Done,
    /// Failed, and why (the worker exits after sending it).
    Failed(String),
}

/// Frames larger than this are refused (a batch of 64 images at 1024 px is 200 MB).
const LARGEST_FRAME: u64 = 1 << 32;

fn write_frame(to: &mut impl Write, tag: u8, payload: &[u8]) -> io::Result<()> {
    to.write_all(&[tag])?;
    to.write_all(&(payload.len() as u64).to_le_bytes())?;
    to.write_all(payload)?;
    to.flush()
}

fn read_frame(from: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut tag = [0; 1];
    from.read_exact(&mut tag)?;
    let mut len = [0; 8];
    from.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > LARGEST_FRAME {
        return Err(invalid(format!("a frame of {len} bytes")));
    }
    let mut payload = vec![0; len as usize];
    from.read_exact(&mut payload)?;
    Ok((tag[0], payload))
}

fn invalid(what: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what)
}

impl Order {
    /// Sends it.
    pub fn write(&self, to: &mut impl Write) -> io::Result<()> {
        match self {
            Order::Load(dir) => write_frame(to, b'L', dir.to_string_lossy().as_bytes()),
            Order::Step(batch) => write_frame(to, b'S', &encode_batch(batch)),
            Order::Stop => write_frame(to, b'Q', &[]),
        }
    }

    /// Receives one.
    pub fn read(from: &mut impl Read) -> io::Result<Order> {
        let (tag, payload) = read_frame(from)?;
        match tag {
            b'L' => Ok(Order::Load(PathBuf::from(text(payload)?))),
            b'S' => Ok(Order::Step(decode_batch(&payload)?)),
            b'Q' => Ok(Order::Stop),
            other => Err(invalid(format!("unknown order {other}"))),
        }
    }
}

impl Reply {
    /// Sends it.
    pub fn write(&self, to: &mut impl Write) -> io::Result<()> {
        match self {
            Reply::Done => write_frame(to, b'D', &[]),
            Reply::Failed(why) => write_frame(to, b'F', why.as_bytes()),
        }
    }

    /// Receives one.
    pub fn read(from: &mut impl Read) -> io::Result<Reply> {
        let (tag, payload) = read_frame(from)?;
        match tag {
            b'D' => Ok(Reply::Done),
            b'F' => Ok(Reply::Failed(text(payload)?)),
            other => Err(invalid(format!("unknown reply {other}"))),
        }
    }
}

fn text(bytes: Vec<u8>) -> io::Result<String> {
    String::from_utf8(bytes).map_err(|e| invalid(e.to_string()))
}

fn encode_batch(batch: &TrainBatch) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend((batch.images.len() as u32).to_le_bytes());
    for (prompt, image) in batch.prompts.iter().zip(&batch.images) {
        out.extend((prompt.len() as u32).to_le_bytes());
        out.extend(prompt.as_bytes());
        out.extend(image.width().to_le_bytes());
        out.extend(image.height().to_le_bytes());
        out.extend(image.pixels());
    }
    out
}

/// The unread rest of a payload.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(invalid("a batch cut short".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn decode_batch(bytes: &[u8]) -> io::Result<TrainBatch> {
    let mut cursor = Cursor(bytes);
    let n = cursor.u32()? as usize;
    let mut batch = TrainBatch { prompts: vec![], images: vec![] };
    for _ in 0..n {
        let len = cursor.u32()? as usize;
        batch.prompts.push(text(cursor.take(len)?.to_vec())?);
        let (width, height) = (cursor.u32()?, cursor.u32()?);
        let pixels = cursor.take(width as usize * height as usize * 3)?.to_vec();
        batch.images.push(Image::from_rgb(width, height, pixels).map_err(|e| invalid(e.to_string()))?);
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_and_replies_cross_whole_and_a_cut_frame_is_an_error() {
        let mut image = Image::filled(3, 2, [1, 2, 3]);
        image.put(2, 1, [200, 100, 0]);
        let batch =
            TrainBatch { prompts: vec!["a red circle".into(), "é".into()], images: vec![image.clone(), image] };
        let orders = [Order::Load("/runs/x/checkpoints/step-10".into()), Order::Step(batch), Order::Stop];
        let mut wire = vec![];
        for order in &orders {
            order.write(&mut wire).unwrap();
        }
        let mut from = wire.as_slice();
        for order in &orders {
            assert_eq!(&Order::read(&mut from).unwrap(), order);
        }
        for reply in [Reply::Done, Reply::Failed("loss diverged".into())] {
            let mut wire = vec![];
            reply.write(&mut wire).unwrap();
            assert_eq!(Reply::read(&mut wire.as_slice()).unwrap(), reply);
        }
        let mut wire = vec![];
        orders[1].write(&mut wire).unwrap();
        wire.truncate(wire.len() - 1);
        assert!(Order::read(&mut wire.as_slice()).is_err());
    }
}
