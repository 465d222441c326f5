//! The `hpss` node, the separation floor: four stems that sum to the delayed input, at any
//! block size, under the allocation guard; clicks go to drums, a low tone to bass, a melody to
//! lead; NaN input gives finite output.

mod common;
use common::*;
use stagebox_engine::alloc_check::CheckedAlloc;
use stagebox_engine::audio_file::Audio;
use stagebox_engine::backend::offline::{render, RenderOptions};
use stagebox_engine::GraphDesc;

#[global_allocator]
static ALLOC: CheckedAlloc = CheckedAlloc;

const SR: u32 = 48000;
const STEMS: [&str; 4] = ["drums", "bass", "lead", "other"];

/// input -> hpss -> each stem to its own output channel (0..4), and the stems' sum to channel 4.
fn split_graph(channels: i64) -> GraphDesc {
    let mut nodes = vec![
        node("in", "input", &[("channels", i(channels))]),
        node("h", "hpss", &[("channels", i(channels))]),
        node("sum", "mixer", &[("inputs", i(4)), ("channels", i(channels))]),
    ];
    let mut conns = vec![conn("in", "h")];
    for (k, stem) in STEMS.iter().enumerate() {
        nodes.push(node(
            &format!("o{k}"),
            "output",
            &[("channels", i(channels)), ("first_channel", i(k as i64 * channels))],
        ));
        conns.push(conn(&format!("h.{stem}"), &format!("o{k}")));
        conns.push(conn(&format!("h.{stem}"), &format!("sum.in{}", k + 1)));
    }
    nodes.push(node(
        "o4",
        "output",
        &[("channels", i(channels)), ("first_channel", i(4 * channels))],
    ));
    conns.push(conn("sum", "o4"));
    graph(nodes, conns)
}

/// A 110 Hz bass, a 4-note melody at 440-660 Hz with harmonics, clicks every 250 ms.
fn mix(secs: f64) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = (secs * SR as f64) as usize;
    let (mut bass, mut lead, mut clicks) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    let notes = [440.0f32, 523.25, 587.33, 659.25];
    let mut phase = 0.0f32;
    for t in 0..n {
        let ts = t as f32 / SR as f32;
        bass[t] = 0.3 * (2.0 * std::f32::consts::PI * 65.0 * ts).sin();
        let f0 = notes[(ts / 0.5) as usize % 4];
        phase += 2.0 * std::f32::consts::PI * f0 / SR as f32;
        lead[t] = (1..=5).map(|h| 0.25 / h as f32 * (phase * h as f32).sin()).sum();
        let since = t % (SR as usize / 4);
        if since < 96 {
            let mut s = (t as u32).wrapping_mul(2654435761);
            s ^= s >> 13;
            clicks[t] = 0.8 * (1.0 - since as f32 / 96.0) * ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 2.0;
        }
    }
    let sum = (0..n).map(|t| bass[t] + lead[t] + clicks[t]).collect();
    (sum, bass, lead, clicks)
}

fn run(g: &GraphDesc, input: &[f32], channels: usize, block: usize) -> (Vec<Vec<f32>>, u64) {
    let audio = Audio {
        sample_rate: SR,
        channels,
        samples: input.to_vec(),
        wav_format: None,
    };
    let opts = RenderOptions {
        sample_rate: SR,
        block_size: block,
        ..Default::default()
    };
    let r = render(g, &registry(), Some(&audio), &opts, |_, _| {}).unwrap();
    let ch = r.audio.channels;
    let outs = (0..ch)
        .map(|c| r.audio.samples.iter().skip(c).step_by(ch).copied().collect())
        .collect();
    (outs, r.alloc_violations)
}

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|v| (*v as f64).powi(2)).sum()
}

#[test]
fn the_stems_sum_to_the_input_at_any_block_size_without_allocating() {
    let (x, _, _, _) = mix(3.0);
    let g = split_graph(1);
    let (first, violations) = run(&g, &x, 1, 64);
    assert_eq!(violations, 0);
    // Latency is compensated by the render: channel 4 is the input, to float rounding.
    let err: f64 = first[4].iter().zip(&x).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    let db = 10.0 * (err / energy(&x)).log10();
    assert!(db < -90.0, "the stems' sum is {db:.1} dB off the input");
    for block in [1, 512, 333] {
        let (other, v) = run(&g, &x, 1, block);
        assert_eq!(v, 0);
        assert_eq!(other, first, "block {block} differs");
    }
}

#[test]
fn clicks_go_to_drums_the_low_tone_to_bass_the_melody_to_lead() {
    let (x, bass, lead, clicks) = mix(4.0);
    let (stems, _) = run(&split_graph(1), &x, 1, 256);
    // Each stem against each source: the stem holding most of a source is the right one.
    let share = |stem: &[f32], src: &[f32]| {
        let dot: f64 = stem.iter().zip(src).map(|(a, b)| *a as f64 * *b as f64).sum();
        dot / energy(src)
    };
    let skip = SR as usize / 2;
    let at = |v: &[f32]| v[skip..].to_vec();
    let (bass, lead, clicks) = (at(&bass), at(&lead), at(&clicks));
    let s: Vec<Vec<f32>> = stems.iter().take(4).map(|v| at(v)).collect();
    assert!(share(&s[0], &clicks) > 0.5, "drums hold {:.2} of the clicks", share(&s[0], &clicks));
    assert!(share(&s[1], &bass) > 0.8, "bass holds {:.2} of the bass", share(&s[1], &bass));
    assert!(share(&s[2], &lead) > 0.6, "lead holds {:.2} of the melody", share(&s[2], &lead));
    assert!(share(&s[2], &bass).abs() < 0.1 && share(&s[1], &lead).abs() < 0.1);
}

#[test]
fn nan_and_infinite_input_give_finite_stems_and_stereo_stems_are_stereo() {
    let (x, _, _, _) = mix(1.5);
    let mut st: Vec<f32> = x.iter().flat_map(|v| [*v, -*v * 0.5]).collect();
    for k in [1000, 20_001, 40_000] {
        st[k] = f32::NAN;
        st[k + 7] = f32::INFINITY;
    }
    let (outs, _) = run(&split_graph(2), &st, 2, 128);
    assert_eq!(outs.len(), 10);
    for (c, o) in outs.iter().enumerate() {
        assert!(o.iter().all(|v| v.is_finite()), "channel {c} is not finite");
    }
    // The right channel's stems are the left's, scaled as the input is (the masks come from the mid).
    let tail = 60_000..outs[0].len();
    let e_l: f64 = energy(&outs[4][tail.clone()]);
    let e_r: f64 = energy(&outs[5][tail]);
    assert!(e_l > 0.0 && (e_r / e_l - 0.25).abs() < 0.01, "{e_r} / {e_l}");
}
