#!/usr/bin/env python3
"""Makes the example streaming model for the `onnx` node (docs/models.md): a soft clipper with
an envelope follower, written directly as an ONNX graph (no training, no PyTorch), so that the
node's every kind of tensor has an example:

  inputs   audio    [1, 256]  the last 256 samples of audio port `in` (window 256)
           drive    [1]       parameter `drive` (0.1..20, default 4)
           level_db [1]       control port `level_db` (dB; unconnected: 0)
           env_in   [1]       recurrent state: the envelope so far
  outputs  out      [1, 128]  audio port `out`: the newest hop (128 samples) of the input,
                              tanh(drive * x) / tanh(drive) * 10^(level_db / 20)
           envelope [1]       control port `envelope`: 0.8 * env_in + 0.2 * rms(window)
           env_out  [1]       the next run's env_in

    .cache/eval-venv/bin/python models/example_softclip/make.py   # writes softclip.onnx and the sha256 into manifest.toml
"""
import hashlib
import math
import os
import re

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
WINDOW, HOP = 256, 128


def graph():
    f = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("audio", f, [1, WINDOW]),
        helper.make_tensor_value_info("drive", f, [1]),
        helper.make_tensor_value_info("level_db", f, [1]),
        helper.make_tensor_value_info("env_in", f, [1]),
    ]
    outputs = [
        helper.make_tensor_value_info("out", f, [1, HOP]),
        helper.make_tensor_value_info("envelope", f, [1]),
        helper.make_tensor_value_info("env_out", f, [1]),
    ]
    consts = {
        "starts": np.array([WINDOW - HOP], np.int64),
        "ends": np.array([WINDOW], np.int64),
        "axes": np.array([1], np.int64),
        "db_to_ln": np.array([math.log(10.0) / 20.0], np.float32),
        "keep": np.array([0.8], np.float32),
        "take": np.array([0.2], np.float32),
    }
    init = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    n = helper.make_node
    nodes = [
        n("Slice", ["audio", "starts", "ends", "axes"], ["newest"]),
        n("Mul", ["newest", "drive"], ["driven"]),
        n("Tanh", ["driven"], ["clipped"]),
        n("Tanh", ["drive"], ["ceiling"]),
        n("Div", ["clipped", "ceiling"], ["shaped"]),
        n("Mul", ["level_db", "db_to_ln"], ["level_ln"]),
        n("Exp", ["level_ln"], ["gain"]),
        n("Mul", ["shaped", "gain"], ["out"]),
        n("Mul", ["audio", "audio"], ["squared"]),
        n("ReduceMean", ["squared"], ["mean_square"], axes=[1], keepdims=0),
        n("Sqrt", ["mean_square"], ["rms"]),
        n("Mul", ["env_in", "keep"], ["kept"]),
        n("Mul", ["rms", "take"], ["taken"]),
        n("Add", ["kept", "taken"], ["env_out"]),
        n("Identity", ["env_out"], ["envelope"]),
    ]
    g = helper.make_graph(nodes, "softclip", inputs, outputs, init)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="stagebox make.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main():
    path = os.path.join(HERE, "softclip.onnx")
    onnx.save(graph(), path)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    manifest = os.path.join(HERE, "manifest.toml")
    text = open(manifest).read()
    text = re.sub(r'^sha256 = "[0-9a-f]*"', f'sha256 = "{digest}"', text, count=1, flags=re.M)
    open(manifest, "w").write(text)
    print(f"{path}: sha256 {digest}")


if __name__ == "__main__":
    main()
