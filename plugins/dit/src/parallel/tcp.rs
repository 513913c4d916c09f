//! The collective over loopback TCP: rank 0 listens at the rendezvous address, every other rank
//! connects to it; a mean is each rank's values sent to rank 0, summed there in rank order, and
//! the result sent back. Twice the data through one process is no match for NCCL on GPUs, but
//! it needs nothing but sockets, so data-parallel training runs (and is tested) on any machine.
//! NCCL's own start-up uses it to hand its unique id from rank 0 to the others.

use super::{Collective, ParallelError};
use candle_core::{DType, Tensor};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A rank of a group that averages over TCP.
pub struct TcpCollective {
    rank: usize,
    world: usize,
    /// Rank 0: the connection of rank `i + 1` at `i`. Other ranks: the one to rank 0.
    peers: Vec<TcpStream>,
}

impl TcpCollective {
    /// Joins the group of `world` ranks meeting at `address` as `rank`, waiting at most
    /// `patience` for the others.
    pub fn join(rank: usize, world: usize, address: &str, patience: Duration) -> Result<Self, ParallelError> {
        if rank >= world {
            return Err(ParallelError::Disagree(format!("rank {rank} in a group of {world}")));
        }
        let rendezvous = |source| ParallelError::Rendezvous { rank, address: address.to_string(), source };
        let deadline = Instant::now() + patience;
        let peers = if world == 1 {
            vec![]
        } else if rank == 0 {
            let listener = TcpListener::bind(address).map_err(rendezvous)?;
            listener.set_nonblocking(true).map_err(rendezvous)?;
            let mut slots: Vec<Option<TcpStream>> = (1..world).map(|_| None).collect();
            while slots.iter().any(Option::is_none) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).map_err(rendezvous)?;
                        let peer = read_u64(&mut stream).map_err(rendezvous)? as usize;
                        match slots.get_mut(peer.wrapping_sub(1)) {
                            Some(slot @ None) => *slot = Some(stream),
                            _ => return Err(ParallelError::Disagree(format!("a second rank {peer} joined"))),
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            let missing = slots.iter().filter(|s| s.is_none()).count();
                            return Err(ParallelError::Timeout { rank, missing, world });
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(rendezvous(e)),
                }
            }
            slots.into_iter().flatten().collect()
        } else {
            // Rank 0 may not be listening yet: it starts alongside this process.
            let mut stream = loop {
                match TcpStream::connect(address) {
                    Ok(stream) => break stream,
                    Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                    Err(_) => return Err(ParallelError::Timeout { rank, missing: 1, world }),
                }
            };
            write_u64(&mut stream, rank as u64).map_err(rendezvous)?;
            vec![stream]
        };
        for peer in &peers {
            peer.set_nodelay(true).map_err(rendezvous)?;
        }
        Ok(TcpCollective { rank, world, peers })
    }

    /// Rank 0's `bytes`, on every rank (`bytes` is ignored elsewhere).
    pub fn broadcast(&mut self, bytes: &[u8]) -> Result<Vec<u8>, ParallelError> {
        if self.rank == 0 {
            for (i, peer) in self.peers.iter_mut().enumerate() {
                write_bytes(peer, bytes).map_err(|source| ParallelError::Lost { peer: i + 1, source })?;
            }
            return Ok(bytes.to_vec());
        }
        read_bytes(&mut self.peers[0]).map_err(|source| ParallelError::Lost { peer: 0, source })
    }

    /// The element-wise mean of `values` over all ranks.
    fn mean_of(&mut self, values: Vec<f32>) -> Result<Vec<f32>, ParallelError> {
        if self.world == 1 {
            return Ok(values);
        }
        if self.rank != 0 {
            let lost = |source| ParallelError::Lost { peer: 0, source };
            write_bytes(&mut self.peers[0], &to_bytes(&values)).map_err(lost)?;
            let mean = from_bytes(&read_bytes(&mut self.peers[0]).map_err(lost)?);
            return if mean.len() == values.len() {
                Ok(mean)
            } else {
                Err(ParallelError::Disagree(format!("rank 0 sent {} values for {}", mean.len(), values.len())))
            };
        }
        let mut sum = values;
        for (i, peer) in self.peers.iter_mut().enumerate() {
            let theirs = from_bytes(&read_bytes(peer).map_err(|source| ParallelError::Lost { peer: i + 1, source })?);
            if theirs.len() != sum.len() {
                return Err(ParallelError::Disagree(format!(
                    "rank {} sent {} values where rank 0 has {}",
                    i + 1,
                    theirs.len(),
                    sum.len()
                )));
            }
            sum.iter_mut().zip(&theirs).for_each(|(s, t)| *s += t);
        }
        let scale = 1.0 / self.world as f32;
        sum.iter_mut().for_each(|s| *s *= scale);
        let bytes = to_bytes(&sum);
        for (i, peer) in self.peers.iter_mut().enumerate() {
            write_bytes(peer, &bytes).map_err(|source| ParallelError::Lost { peer: i + 1, source })?;
        }
        Ok(sum)
    }
}

impl Collective for TcpCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    fn mean(&mut self, bucket: &Tensor) -> Result<Tensor, ParallelError> {
        let values = bucket.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let n = values.len();
        let mean = self.mean_of(values)?;
        Ok(Tensor::from_vec(mean, n, bucket.device())?.to_dtype(bucket.dtype())?.reshape(bucket.shape())?)
    }
}

fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn write_u64(stream: &mut TcpStream, value: u64) -> std::io::Result<()> {
    stream.write_all(&value.to_le_bytes())
}

fn read_u64(stream: &mut TcpStream) -> std::io::Result<u64> {
    let mut bytes = [0; 8];
    stream.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

fn write_bytes(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    write_u64(stream, bytes.len() as u64)?;
    stream.write_all(bytes)
}

/// Messages longer than this are refused: no gradient bucket comes near it.
const LARGEST_MESSAGE: u64 = 1 << 34;

fn read_bytes(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = read_u64(stream)?;
    if len > LARGEST_MESSAGE {
        return Err(std::io::Error::new(ErrorKind::InvalidData, format!("a message of {len} bytes")));
    }
    let mut bytes = vec![0; len as usize];
    stream.read_exact(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn free_address() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    }

    #[test]
    fn three_ranks_agree_on_the_mean_and_on_rank_zeros_bytes() {
        let address = free_address();
        let ranks: Vec<_> = (0..3)
            .map(|rank| {
                let address = address.clone();
                std::thread::spawn(move || {
                    let mut group = TcpCollective::join(rank, 3, &address, Duration::from_secs(20)).unwrap();
                    let mine = Tensor::new(&[[rank as f32, 10.0 * rank as f32]], &Device::Cpu).unwrap();
                    let mean = group.mean(&mine).unwrap();
                    let said = group.broadcast(format!("from {rank}").as_bytes()).unwrap();
                    (mean.to_vec2::<f32>().unwrap(), String::from_utf8(said).unwrap())
                })
            })
            .collect();
        for rank in ranks {
            let (mean, said) = rank.join().unwrap();
            assert_eq!(mean, vec![vec![1.0, 10.0]]);
            assert_eq!(said, "from 0");
        }
    }

    #[test]
    fn a_rank_that_sends_a_different_length_is_refused_and_a_missing_rank_times_out() {
        let address = free_address();
        let peer = {
            let address = address.clone();
            std::thread::spawn(move || {
                let mut group = TcpCollective::join(1, 2, &address, Duration::from_secs(20)).unwrap();
                group.mean(&Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap()).map(|_| ())
            })
        };
        let mut group = TcpCollective::join(0, 2, &address, Duration::from_secs(20)).unwrap();
        let refused = group.mean(&Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap()).unwrap_err();
        assert!(refused.to_string().contains("rank 1 sent 3 values where rank 0 has 2"), "{refused}");
        drop(group);
        // Rank 0 stopped: the peer learns it lost rank 0 instead of waiting forever.
        assert!(matches!(peer.join().unwrap(), Err(ParallelError::Lost { peer: 0, .. })));

        let alone = TcpCollective::join(0, 3, &free_address(), Duration::from_millis(200)).err().unwrap();
        assert!(alone.to_string().contains("2 of 3 ranks did not join"), "{alone}");
    }
}
