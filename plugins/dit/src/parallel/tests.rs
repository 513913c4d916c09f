//! Data-parallel training with real ranks: threads of this test process, each a model joined
//! to the others over loopback TCP, as `evolve run --gpus N` runs them as processes.

use super::replica::rank_stream;
use crate::DitModel;
use crate::dit::BlockPath;
use crate::tests::{shapes_batch, tiny_model_from};
use candle_core::backprop::GradStore;
use evolve_sdk::{BaseModel, DataParallel, TrainBatch};

fn group(world: usize) -> Vec<DataParallel> {
    let rendezvous = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    (0..world).map(|rank| DataParallel { rank, world, rendezvous: rendezvous.clone() }).collect()
}

/// Runs `work` as every rank of a fresh group, each on a model built by `config` with `seed`
/// (per rank), and returns what each rank returned, by rank.
fn as_ranks<T: Send + 'static>(
    config: serde_json::Value,
    seeds: &[u64],
    work: impl Fn(usize, DitModel) -> T + Send + Sync + Copy + 'static,
) -> Vec<T> {
    let ranks: Vec<_> = group(seeds.len())
        .into_iter()
        .zip(seeds.to_vec())
        .map(|(member, seed)| {
            let config = config.clone();
            std::thread::spawn(move || {
                let model = tiny_model_from(seed, config).join_group(&member);
                work(member.rank, model.expect("joins"))
            })
        })
        .collect();
    ranks.into_iter().map(|r| r.join().expect("rank thread")).collect()
}

fn shard(rank: usize) -> TrainBatch {
    shapes_batch(4, 70 + rank as u64)
}

fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> (f32, f32) {
    let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let scale = a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
    (diff, scale)
}

/// Every rank ends the backward pass with the mean of what each rank's share gives alone (the
/// gradient of the union's mean loss), on the overlapped path, with checkpointing, and with
/// micro-batches.
#[test]
fn ranks_average_to_the_gradient_each_share_gives_alone() {
    let configs = [
        serde_json::json!({"preset": "tiny", "depth": 2}),
        serde_json::json!({"preset": "tiny", "depth": 2, "gradient_checkpointing": true}),
        serde_json::json!({"preset": "tiny", "depth": 2, "accumulate": 2}),
    ];
    for config in configs {
        let averaged = as_ranks(config.clone(), &[5, 5], |rank, mut model| {
            let (loss, grads) = model.averaged_gradients(&shard(rank)).unwrap();
            (loss, named(&model, &grads))
        });
        // The same shares, each alone, drawing what its rank draws.
        let mut alone = vec![];
        for rank in 0..2 {
            let mut model = tiny_model_from(5, config.clone());
            model.rng = rank_stream(&model.rng, rank);
            let (loss, grads) = if config.get("accumulate").is_some() {
                model.accumulated_gradients(&shard(rank)).unwrap()
            } else {
                model.gradients(&shard(rank), Some(BlockPath::Candle)).unwrap()
            };
            alone.push((loss, named(&model, &grads)));
        }
        let mean_loss = (alone[0].0 + alone[1].0) / 2.0;
        for (loss, grads) in &averaged {
            assert!((loss - mean_loss).abs() <= 1e-6 * mean_loss, "{config}: loss {loss} vs {mean_loss}");
            assert_eq!(grads.len(), alone[0].1.len(), "{config}: every parameter averaged");
            for (name, g) in grads {
                let expected = ((&alone[0].1[name] + &alone[1].1[name]).unwrap() * 0.5).unwrap();
                let (diff, scale) = max_abs_diff(&expected, g);
                assert!(diff <= 1e-5 * scale, "{config} {name}: off by {diff} (scale {scale})");
            }
        }
        // Bit for bit the same on every rank: they take the same step.
        for (name, g) in &averaged[0].1 {
            assert_eq!(max_abs_diff(g, &averaged[1].1[name]).0, 0.0, "{name}");
        }
    }
}

fn named(model: &DitModel, grads: &GradStore) -> std::collections::BTreeMap<String, candle_core::Tensor> {
    let zeros = |v: &candle_core::Var| v.as_tensor().zeros_like().unwrap();
    model
        .params()
        .vars()
        .iter()
        .map(|(name, var)| (name.clone(), grads.get(var).cloned().unwrap_or_else(|| zeros(var))))
        .collect()
}

/// Three ranks, each training on its own shares, keep identical weights step after step and
/// learn (the loss they report, the group's, falls).
#[test]
fn replicas_train_in_step_and_learn() {
    let steps = 40;
    let results = as_ranks(serde_json::json!({"preset": "tiny", "depth": 2}), &[9, 9, 9], move |rank, mut model| {
        let losses: Vec<f32> = (0..steps)
            .map(|step| model.train_step(&shapes_batch(4, 1000 * step + rank as u64)).unwrap().loss)
            .collect();
        let weights: Vec<Vec<f32>> = model
            .params()
            .vars()
            .values()
            .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect();
        (losses, weights)
    });
    let (losses, weights) = &results[0];
    for (other_losses, other_weights) in &results[1..] {
        assert_eq!(other_weights, weights, "replicas drifted apart");
        assert_eq!(other_losses, losses, "every rank reports the group's loss");
    }
    let mean = |l: &[f32]| l.iter().sum::<f32>() / l.len() as f32;
    let (start, end) = (mean(&losses[..10]), mean(&losses[steps as usize - 10..]));
    assert!(end < 0.9 * start, "the group's loss went from {start} to {end}");
}

/// Ranks built from different seeds would average gradients of different models: refused
/// when they join, on every rank, naming a parameter.
#[test]
fn ranks_holding_different_weights_are_refused() {
    let ranks: Vec<_> = group(2)
        .into_iter()
        .map(|member| {
            std::thread::spawn(move || {
                let model = tiny_model_from(1 + member.rank as u64, serde_json::json!({"preset": "tiny", "depth": 2}));
                model.join_group(&member).err().map(|e| e.to_string())
            })
        })
        .collect();
    for rank in ranks {
        let refused = rank.join().unwrap().expect("refused");
        assert!(refused.contains("holds other weights than the group"), "{refused}");
    }
}

/// The path a replica trains on reports every block during the backward pass: what lets the
/// averaging overlap it.
#[test]
fn the_replica_path_hands_blocks_over_during_the_backward_pass() {
    let mut model = tiny_model_from(3, serde_json::json!({"preset": "tiny", "depth": 3}));
    let mut seen = vec![];
    let mut done = |i: usize, grads: &GradStore| {
        seen.push((i, grads.get_ids().count()));
        Ok(())
    };
    model.gradients_reporting(&shard(0), Some(BlockPath::Segmented), Some(&mut done)).unwrap();
    assert_eq!(seen.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![2, 1, 0]);
    // The store grows block by block: the earlier blocks' gradients arrive after the later ones'.
    assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "{seen:?}");
}
