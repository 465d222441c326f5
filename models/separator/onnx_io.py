"""The separator's ONNX file, read and written: `warm_from_onnx` reads the shipped model back into
a Separator (the checkpoints live in .cache and are gone on a fresh machine; the ONNX file is
committed), `widen_into` carries a network's function into a wider one, and `export` writes the
best checkpoint as the ONNX model the engine runs, the Rust test's fixture and the manifest's
sha256 and state shape. Used by train.py (`--warm-onnx`, `--export`)."""
import hashlib
import json
import os
import re

import numpy as np
import torch

from train import (BINS, HERE, LONG_BINS, ROOT, SR, LongStep, Separator, Step, load_best, long_stft,
                   state_size)

FIXTURE = os.path.join(ROOT, "models", "tests", "data", "separator_ref.json")


def apply_calibration(net):
    """calibration.json's mask powers (calibrate.py, on the validation split) into `net`."""
    calibration = os.path.join(HERE, "calibration.json")
    if os.path.exists(calibration):
        net.power.copy_(torch.tensor(json.load(open(calibration))["powers"]))
        print(f"mask powers {net.power.tolist()} from {calibration}")


def replay(step, frames, longs=None):
    """`step` (a Step) frame by frame over `frames` [n, bins] (and `longs` [n, LONG_BINS]) from a
    zero state: masks [n, 4, bins]."""
    outs, state = [], torch.zeros(state_size(step.net.hidden, step.net.level))
    with torch.no_grad():
        for i, f in enumerate(frames):
            masks, state = step(f, state, None if longs is None else longs[i])
            outs.append(masks)
    return torch.stack(outs)


def warm_from_onnx(path):
    """The shipped model, read back into a Separator of its own GRU width: the checkpoints live
    in .cache and are gone on a fresh machine, the ONNX file is committed. ONNX's GRU keeps its gates as z, r, h, PyTorch's
    as r, z, n. Checked against the committed fixture (which has calibration.json's mask powers
    folded in); the powers are then set back to one for training."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    # A model with the long window's input was exported through LongStep: its names start "step.".
    init = {i.name.removeprefix("step."): torch.tensor(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
    ops = [(n.op_type, [i.removeprefix("step.") for i in n.input]) for n in m.graph.node if n.op_type in ("MatMul", "GRU")]
    matmuls, grus = [init[i[1]] for t, i in ops if t == "MatMul" and i[1] in init], [i for t, i in ops if t == "GRU"]
    h = next(w.shape[1] for w in matmuls if w.shape[0] == BINS)
    long = "net.long_mean" in init  # v7 on
    state_in = next(i for i in m.graph.input if i.name == "state_in")
    level = state_in.type.tensor_type.shape.dim[0].dim_value == state_size(h, True)
    mids = sorted(n.removeprefix("net.") for n in init if n.startswith("net.localmid."))  # v10 on
    pitch = sorted(n.removeprefix("net.") for n in init if n.startswith("net.pitch."))  # the pitch branch's, by name
    net = Separator(h, long=long, level=level, local_depth=len(mids) // 2, pitch=bool(pitch))
    reorder = lambda t: torch.cat([t[h:2 * h], t[:h], t[2 * h:]])
    sd = net.state_dict()
    names = ["mean", "std", "inp.bias", "out.bias", "local1.weight", "local1.bias", "local2.weight", "local2.bias"] + mids + pitch
    if long:
        names += ["long_mean", "long_std", "long_a.bias", "long_inp.bias", "long_out.bias"]
    for name in names:
        sd[name] = init["net." + name]
    # The Linear layers' weights (transposed in the graph), told apart by their shapes.
    for name in ["inp", "out"] + (["long_a", "long_inp", "long_out"] if long else []):
        shape = tuple(reversed(sd[name + ".weight"].shape))
        sd[name + ".weight"] = next(w for w in matmuls if tuple(w.shape) == shape).T
    for layer, g in enumerate(grus):
        sd[f"gru.weight_ih_l{layer}"], sd[f"gru.weight_hh_l{layer}"] = reorder(init[g[1]][0]), reorder(init[g[2]][0])
        bias = init[g[3]][0]
        sd[f"gru.bias_ih_l{layer}"], sd[f"gru.bias_hh_l{layer}"] = reorder(bias[:3 * h]), reorder(bias[3 * h:])
    net.load_state_dict(sd)
    fixture = json.load(open(FIXTURE))
    apply_calibration(net)
    longs = torch.tensor(fixture["mag_long"]).view(-1, LONG_BINS) if long else None
    got = replay(Step(net).eval(), torch.tensor(fixture["mag"]).view(-1, BINS), longs)
    worst = (got.view(-1) - torch.tensor(fixture["masks"])).abs().max().item()
    net.power.fill_(1.0)
    net.train()
    if worst > 1e-4:
        raise SystemExit(f"warm start: the ONNX weights read back differ from the fixture by {worst}")
    print(f"warm start from {path} (GRU {h}; fixture within {worst:.1e})", flush=True)
    return net


def widen_into(small, big):
    """`small`'s function into `big`, whose GRU is as wide or wider: every old weight copied, the
    new units keep their random start, and every weight from a new unit into an old unit or
    into the output is zero, so `big` gives `small`'s masks until training uses the new units."""
    h0, h1 = small.hidden, big.hidden
    assert h1 >= h0, f"--hidden {h1} is narrower than the shipped model's {h0}"
    sd, old = big.state_dict(), small.state_dict()
    for name, w in old.items():
        if name.startswith(("inp.", "long_inp.")):  # rows: the units they feed
            sd[name][:h0] = w
        elif name.startswith("gru.bias"):
            for g in range(3):
                sd[name][g * h1:g * h1 + h0] = w[g * h0:(g + 1) * h0]
        elif name.startswith("gru.weight"):
            for g in range(3):
                rows = sd[name][g * h1:g * h1 + h0]
                rows.zero_()
                rows[:, :h0] = w[g * h0:(g + 1) * h0]
        elif name == "out.weight":
            sd[name].zero_()
            sd[name][:, :h0], sd[name][:, h1:h1 + h0] = w[:, :h0], w[:, h0:]
        else:
            sd[name] = w
    big.load_state_dict(sd)


def export():
    net = load_best()
    apply_calibration(net)
    net.eval()
    step = Step(net)
    onnx_path = os.path.join(HERE, "separator.onnx")
    mag, state = torch.rand(BINS), torch.zeros(state_size(net.hidden, net.level))
    if net.long:  # inputs mag, mag_long, state_in (the state last, as the engine reads it)
        step_long = LongStep(step)
        torch.onnx.export(step_long, (mag, torch.rand(LONG_BINS), state), onnx_path,
                          input_names=["mag", "mag_long", "state_in"], output_names=["masks", "state_out"],
                          opset_version=17, dynamo=False)
    else:
        torch.onnx.export(step, (mag, state), onnx_path, input_names=["mag", "state_in"],
                          output_names=["masks", "state_out"], opset_version=17, dynamo=False)
    # Fixture: 12 frames of a test signal's magnitudes and PyTorch's masks, for the Rust test
    # that ONNX Runtime gives the same (models/tests/separator.rs).
    g = torch.Generator().manual_seed(5)
    frames = torch.rand(12, BINS, generator=g) * 3.0
    longs = torch.rand(12, LONG_BINS, generator=g) * 6.0 if net.long else None
    fixture = {"mag": frames.numpy().ravel().tolist(), "masks": replay(step, frames, longs).numpy().ravel().tolist()}
    if longs is not None:
        fixture["mag_long"] = longs.numpy().ravel().tolist()
        # The long window's features of a test signal, for the test that the engine computes
        # them as long_stft does: frame t ends at sample 1024 + 256 t.
        t = torch.arange(6000) / SR
        signal = 0.5 * torch.sin(2 * np.pi * 61.0 * t) + 0.1 * torch.rand(6000, generator=g) - 0.05
        fixture["long_signal"] = signal.numpy().tolist()
        fixture["long_frames"] = long_stft(signal).numpy().ravel().tolist()
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    json.dump(fixture, open(FIXTURE, "w"))
    digest = hashlib.sha256(open(onnx_path, "rb").read()).hexdigest()
    manifest = os.path.join(HERE, "manifest.toml")
    text = open(manifest).read()
    start = text.index('sha256 = "') + len('sha256 = "')
    text = text[:start] + digest + text[text.index('"', start):]
    # The state's length follows the GRU's width: the shape under state_in and state_out.
    text = re.sub(r'(name = "state_(?:in|out)"\n(?:role = "state"\n)?shape = )\[\d+\]',
                  lambda m: f"{m.group(1)}[{state_size(net.hidden, net.level)}]", text)
    long_input = '[[input]]\nname = "mag_long"\nshape = [%d]' % LONG_BINS
    if net.long and '"mag_long"' not in text:  # between the frame and the state, as the engine feeds them
        text = text.replace('[[input]]\nname = "state_in"', long_input + "          # the low bins of a 4096-sample Hann window ending with the frame\n\n[[input]]\nname = \"state_in\"")
    open(manifest, "w").write(text)
    params = sum(p.numel() for p in net.parameters())
    print(f"wrote {onnx_path} ({params} parameters), sha256 {digest} (in manifest.toml)")
