//! `render --record-dir`: every recorder of a patch writes its take, aligned with the input and
//! as long as it; through patches/stems.toml the four stems sum to the mix.

use stagebox_tests::*;

fn read_f64(path: &std::path::Path) -> (u16, Vec<f64>) {
    let r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    let scale = (1i64 << (spec.bits_per_sample - 1)) as f64;
    let v = match spec.sample_format {
        hound::SampleFormat::Int => r.into_samples::<i32>().map(|s| s.unwrap() as f64 / scale).collect(),
        hound::SampleFormat::Float => r.into_samples::<f32>().map(|s| s.unwrap() as f64).collect(),
    };
    (spec.channels, v)
}

#[test]
fn render_record_dir_writes_four_stems_that_sum_to_the_mix() {
    let d = tmp("record-dir");
    let mix = d.join("mix.wav");
    let frames = 48000 * 3 + 123;
    write_wav_i16(&mix, 48000, 2, &test_clip(frames, 48000));
    let stems = d.join("stems");
    let out = stagebox()
        .args(["render", "--patch", "patches/stems.toml", "--input"])
        .arg(&mix)
        .arg("--output")
        .arg(d.join("out.wav"))
        .arg("--record-dir")
        .arg(&stems)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, x) = read_f64(&mix);
    let mut sum = vec![0.0f64; x.len()];
    for stem in ["drums", "bass", "lead", "other"] {
        let (ch, s) = read_f64(&stems.join(format!("{stem}.wav")));
        assert_eq!(ch, 2);
        assert_eq!(s.len(), x.len(), "{stem}.wav is not as long as the mix");
        for (a, b) in sum.iter_mut().zip(&s) {
            *a += b;
        }
    }
    let err: f64 = sum.iter().zip(&x).map(|(a, b)| (a - b).powi(2)).sum();
    let energy: f64 = x.iter().map(|v| v * v).sum();
    let db = 10.0 * (err / energy).log10();
    assert!(db < -50.0, "the stems sum to the mix within {db:.1} dB");
    // The output (nothing muted) is the mix too, its latency removed.
    let (_, y) = read_f64(&d.join("out.wav"));
    let err: f64 = y.iter().zip(&x).map(|(a, b)| (a - b).powi(2)).sum();
    assert!(10.0 * (err / energy).log10() < -50.0);
}
