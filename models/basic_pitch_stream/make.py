#!/usr/bin/env python3
"""Splits Basic Pitch's nmp.onnx (models/basic_pitch) for streaming; writes, beside this script:

  nmp_cnn.onnx  the model's CNN alone: harmonic CQT frames in ([batch, frames, 264, 8], any
                number of frames: the fixed-size Reshapes become Squeeze/Transpose), contour,
                note and onset activations out. Weights are the original's, bit for bit.
  frontend.bin  the constants of the model's front end, which Stagebox computes incrementally
                in Rust (models/src/hcqt.rs): little-endian f32, in this order
                  lowpass[256]           the anti-alias filter of each octave's decimation by 2
                  kernel_a[36][256]      CQT kernels of one octave (one quadrature part)
                  kernel_b[36][256]      (the other part)
                  scale[309]             per-bin magnitude scale of the 309 kept bins
                  bn_mul, bn_add         the scalar batch norm after the normalised log

  ../tests/data/bp_frontend_ref.bin  a test fixture for the Rust front end: the original model's
                own front end on test_signal() (2 s), little-endian f32: the log-power CQT in dB
                [172][309], then the harmonic CQT of frames 80..85 [5][264][8].

It then checks the split: the full model equals (its own front end -> nmp_cnn.onnx) exactly,
and on a 40-frame slice the frames 12 or more away from either edge equal the full model's.

Reproduce:  pip install onnx==1.23.* onnxruntime numpy && python3 models/basic_pitch_stream/make.py
(the project's evaluation venv has them: .cache/eval-venv/bin/python).
"""
import hashlib
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "basic_pitch", "nmp.onnx")
SRC_SHA = "2c3c1d144bfa61ad236e92e169c13535c880469a12a047d4e73451f2c059a0ec"


def test_signal():
    """2 s at 22050 Hz (43844 samples); models/tests/frontend.rs builds the same one."""
    t = np.arange(43844, dtype=np.float64) / 22050.0
    x = (0.2 * np.sin(2 * np.pi * 55.0 * t) + 0.2 * np.sin(2 * np.pi * 196.0 * t)
         + 0.2 * np.sin(2 * np.pi * 523.25 * t) * (t > 0.7) + 0.1 * np.sin(2 * np.pi * 2093.0 * t)
         + 0.05 * np.sin(2 * np.pi * 6000.0 * t))
    return x.astype(np.float32)


def main():
    raw = open(SRC, "rb").read()
    if hashlib.sha256(raw).hexdigest() != SRC_SHA:
        sys.exit(f"{SRC}: not the basic-pitch 0.4.0 nmp.onnx (sha256 differs)")
    m = onnx.load(SRC)
    g = m.graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}

    def node(prefix):
        hits = [n for n in g.node if n.name.startswith(prefix)]
        assert len(hits) >= 1, prefix
        return hits[0]

    def const_inputs(n):
        return [init[x] for x in n.input if x in init]

    # ---- front-end constants -------------------------------------------------------------
    convs = [n for n in g.node if n.op_type == "Conv" and "cq_t2010v2" in n.name]
    lowpass = {const_inputs(n)[0].tobytes(): const_inputs(n)[0] for n in convs if const_inputs(n)[0].shape == (1, 1, 1, 256)}
    kernels = {}
    for n in convs:
        w = const_inputs(n)[0]
        if w.shape == (36, 1, 1, 256):
            kernels.setdefault(n.input[1], w)
            bias = const_inputs(n)[1]
            assert not np.any(bias), "CQT convolutions have no bias"
    assert len(lowpass) == 1 and len(kernels) == 2, (len(lowpass), len(kernels))
    lp = list(lowpass.values())[0].reshape(256)
    ka, kb = [k.reshape(36, 256) for _, k in sorted(kernels.items())]
    scale = const_inputs(node("model_1/cq_t2010v2_1/mul_1"))[0].reshape(-1)
    assert scale.shape == (309,)
    bn_mul = const_inputs(node("model_1/batch_normalization/FusedBatchNormV3;"))[0]
    bn_nodes = [n for n in g.node if n.name.startswith("model_1/batch_normalization/FusedBatchNormV3")]
    assert [n.op_type for n in bn_nodes] == ["Mul", "Add"]
    bn_mul = float(const_inputs(bn_nodes[0])[0].reshape(()))
    bn_add = float(const_inputs(bn_nodes[1])[0].reshape(()))
    blob = np.concatenate([lp, ka.ravel(), kb.ravel(), scale, [bn_mul, bn_add]]).astype("<f4")
    blob.tofile(os.path.join(HERE, "frontend.bin"))

    # ---- the CNN with a free number of frames ---------------------------------------------
    i0 = [i for i, n in enumerate(g.node) if n.name.startswith("model_1/harmonic-stacking-diff/strided_slice_7")][0]
    hs = g.node[i0].output[0]
    nodes = []
    for n in g.node[i0 + 1:]:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        nodes.append(c)
    inits = [i for i in g.initializer if i.name in {x for n in nodes for x in n.input}]
    out_names = {"StatefulPartitionedCall:0": "contour", "StatefulPartitionedCall:1": "note", "StatefulPartitionedCall:2": "onset"}
    new = []
    for n in nodes:
        if n.op_type == "Reshape":
            shape = init[n.input[1]].tolist()
            if len(shape) == 3:  # [B,1,T,X] -> [B,T,X]
                ax = helper.make_tensor(n.name + "/axes", TensorProto.INT64, [1], [1])
                inits.append(ax)
                n = helper.make_node("Squeeze", [n.input[0], ax.name], list(n.output), name=n.name)
            elif len(shape) == 4:  # [B,T,X,1] -> [B,1,T,X]
                n = helper.make_node("Transpose", [n.input[0]], list(n.output), name=n.name, perm=[0, 3, 1, 2])
            else:
                sys.exit(f"unexpected Reshape to {shape}")
        for k, x in enumerate(n.input):
            n.input[k] = "hcqt" if x == hs else out_names.get(x, x)
        for k, x in enumerate(n.output):
            n.output[k] = out_names.get(x, x)
        new.append(n)
    used = {x for n in new for x in n.input}
    inits = [i for i in inits if i.name in used]
    inp = helper.make_tensor_value_info("hcqt", TensorProto.FLOAT, ["batch", "frames", 264, 8])
    outs = [helper.make_tensor_value_info(v, TensorProto.FLOAT, ["batch", "frames", 264 if v == "contour" else 88]) for v in ("contour", "note", "onset")]
    cnn = helper.make_model(helper.make_graph(new, "basic_pitch_cnn", [inp], outs, initializer=inits), opset_imports=m.opset_import,
                            producer_name="stagebox models/basic_pitch_stream/make.py")
    cnn.ir_version = m.ir_version
    onnx.checker.check_model(cnn)
    onnx.save(cnn, os.path.join(HERE, "nmp_cnn.onnx"))

    # ---- check ----------------------------------------------------------------------------
    import onnxruntime as ort
    g.output.append(helper.make_tensor_value_info(hs, TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    full = ort.InferenceSession(m.SerializeToString(), so)
    part = ort.InferenceSession(os.path.join(HERE, "nmp_cnn.onnx"), so)
    t = np.arange(43844) / 22050
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 262 * t) * (t > 0.7)).astype(np.float32)
    fo = dict(zip([o.name for o in g.output], full.run(None, {g.input[0].name: x[None, :, None]})))
    h = fo[hs]
    po = dict(zip(["contour", "note", "onset"], part.run(None, {"hcqt": h})))
    s = dict(zip(["contour", "note", "onset"], part.run(None, {"hcqt": h[:, 60:100]})))
    for k, v in out_names.items():
        assert np.array_equal(fo[k], po[v]), v
        assert np.abs(fo[k][:, 72:88] - s[v][:, 12:28]).max() < 1e-5, v
    db_name = node("model_1/normalized_log_1/mul;").output[0]
    g.output.append(helper.make_tensor_value_info(db_name, TensorProto.FLOAT, None))
    full = ort.InferenceSession(m.SerializeToString(), so)
    fo = dict(zip([o.name for o in g.output], full.run(None, {g.input[0].name: test_signal()[None, :, None]})))
    ref = np.concatenate([fo[db_name].reshape(-1), fo[hs][0, 80:85].reshape(-1)]).astype("<f4")
    os.makedirs(os.path.join(HERE, "..", "tests", "data"), exist_ok=True)
    ref.tofile(os.path.join(HERE, "..", "tests", "data", "bp_frontend_ref.bin"))
    for f in ("nmp_cnn.onnx", "frontend.bin"):
        print(f, hashlib.sha256(open(os.path.join(HERE, f), "rb").read()).hexdigest())


if __name__ == "__main__":
    main()
