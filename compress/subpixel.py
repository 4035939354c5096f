"""Rewrite stride-2 transposed convolutions of an ONNX graph as a convolution plus ``DepthToSpace`` (sub-pixel).

A ``ConvTranspose`` with stride ``s``, kernel ``k``, pads ``p`` and output padding ``s - 1`` computes each of
the ``s x s`` output phases with a plain convolution over the input, whose taps are every ``s``-th weight
of the transposed kernel (flipped). Stacking the phases as ``s * s * C_out`` output channels and
rearranging them with ``DepthToSpace(blocksize=s, mode=CRD)`` (PyTorch's ``pixel_shuffle``) gives the same
output: an exact re-parametrization, with some taps of the small kernel set to zero where a phase has
fewer taps. Fast ARCNN's output layer (9x9, stride 2, pads 4) becomes a 5x5 convolution to 12 channels.

Why: runtimes run convolutions far better than transposed ones at 3 output channels. Measured on the
2-core Xeon with AMX (OpenVINO 2026.4, 1280x720, 2 threads): the brief's Fast ARCNN in f32 410 -> 266 ms,
bf16 271 -> 87 ms (the deconvolution fell back to f32 there), INT8 77 -> 59 ms; OpenVINO also runs a
deconvolution whose input has an asymmetric quantizer in f32. onnxruntime has no quantized
``ConvTranspose`` at all, so an INT8 graph fuses fully only without it.

QDQ graphs are rewritten too: the int8 weight initializer is rearranged the same way (its zeros stay
zeros), the per-output-channel scales and zero points are repeated for the phases and the
``DequantizeLinear`` axis moves from 1 (a transposed weight's output axis) to 0. The quantized values do
not change, so the graph computes what it did up to the order of float sums.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compress.errors import ExportError


def subpixel_kernel(weight: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """``ConvTranspose`` weight ``(C_in, C_out, k, k)`` -> ``Conv`` weight ``(C_out*s*s, C_in, m, m)``.

    Output channel ``c*s*s + a*s + b`` holds the taps of phase ``(a, b)`` (row, column) of output channel
    ``c``, so ``DepthToSpace(s, CRD)`` puts it at ``(s*i + a, s*j + b)``; ``m = 2*ceil(.)+1`` is the smallest
    odd window that holds every phase's taps around the input pixel, padded by ``m // 2``.
    """
    cin, cout, kh, kw = weight.shape
    if kh != kw:
        raise ExportError(f"sub-pixel rewrite needs a square kernel, got {kh}x{kw}")
    k, s = kh, stride
    # output o = s*i + a takes input i + d from tap t = a + pad - s*d (0 <= t < k)
    ds = sorted({(a + pad - t) // s for a in range(s) for t in range(k) if (a + pad - t) % s == 0})
    half = max(abs(ds[0]), abs(ds[-1]))
    m = 2 * half + 1
    out = np.zeros((cout, s, s, cin, m, m), dtype=weight.dtype)
    for a in range(s):
        for y in range(m):
            ty = a + pad - s * (y - half)
            if not 0 <= ty < k:
                continue
            for b in range(s):
                for x in range(m):
                    tx = b + pad - s * (x - half)
                    if 0 <= tx < k:
                        out[:, a, b, :, y, x] = weight[:, :, ty, tx].T
    return out.reshape(cout * s * s, cin, m, m)


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _rewritable(attrs: dict[str, Any], weight_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """(stride, pad) when the node is a plain 2-D stride-s transposed conv this rewrite reproduces."""
    strides = list(attrs.get("strides", [1, 1]))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    outpad = list(attrs.get("output_padding", [0, 0]))
    if len(weight_shape) != 4 or attrs.get("group", 1) != 1 or "output_shape" in attrs:
        return None
    if list(attrs.get("dilations", [1, 1])) != [1, 1] or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    s = strides[0]
    if s < 2 or strides != [s, s] or len(set(pads)) != 1 or outpad != [s - 1, s - 1]:
        return None
    k, p = weight_shape[2], pads[0]
    # the output must be exactly s x the input: (i-1)*s - 2p + k + (s-1) == s*i  <=>  k == 2p + 1
    if weight_shape[3] != k or k != 2 * p + 1:
        return None
    return s, p


def rewrite_subpixel(src: str | Path, dst: str | Path | None = None) -> int:
    """Rewrite every reproducible stride-s ``ConvTranspose`` of ``src`` in place, or into ``dst``.

    The weight may be a float initializer, or reach the node through ``QuantizeLinear`` /
    ``DequantizeLinear`` (NNCF's QDQ export quantizes a float initializer in the graph; other exporters
    store int8), with scales and zero points as initializers or ``Constant`` nodes.

    Returns:
        How many nodes were rewritten (0: the graph is written unchanged).
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1

    def get(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in constants:
            return numpy_helper.to_array(helper.get_attribute_value(constants[name].attribute[0]))
        return None

    def put(name: str, arr: np.ndarray) -> None:
        tensor = numpy_helper.from_array(arr, name)
        if name in inits:
            inits[name].CopyFrom(tensor)
        else:
            constants[name].attribute[0].t.CopyFrom(tensor)

    count = 0
    new_nodes = []
    for node in graph.node:
        if node.op_type != "ConvTranspose":
            new_nodes.append(node)
            continue
        # walk from the weight input back to its initializer through Dequantize/QuantizeLinear
        chain, name = [], node.input[1]
        prev = producers.get(name)
        while prev is not None and prev.op_type in ("DequantizeLinear", "QuantizeLinear") \
                and consumers.get(name, 0) == 1:
            chain.append(prev)
            name = prev.input[0]
            prev = producers.get(name)
        w = numpy_helper.to_array(inits[name]) if name in inits and consumers.get(name, 0) == 1 else None
        found = _rewritable(_attrs(node), tuple(w.shape)) if w is not None else None
        if w is None or found is None:
            new_nodes.append(node)
            continue
        s, p = found
        cout = w.shape[1]
        per_channel: dict[str, np.ndarray] = {}
        for q in chain:
            axis = _attrs(q).get("axis", 1)
            for arg in q.input[1:]:
                arr = get(arg) if arg else None
                if arg and arr is None:
                    raise ExportError(f"{src}: {q.name}'s {arg} is computed; the sub-pixel rewrite needs a constant")
                if arr is not None and arr.size > 1:
                    if axis != 1 or arr.size != cout:
                        raise ExportError(f"{src}: {q.name} quantizes a transposed weight along axis {axis}; "
                                          f"expected per output channel (axis 1, {cout} values)")
                    per_channel[arg] = np.repeat(arr, s * s)
        kernel = subpixel_kernel(w, s, p)
        put(name, kernel)
        for arg, arr in per_channel.items():
            put(arg, arr)
        for q in chain:
            for a in q.attribute:
                if a.name == "axis" and per_channel:
                    a.i = 0
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else ""
        if bias:
            arr = get(bias)
            if arr is None:
                raise ExportError(f"{src}: {node.name} has a computed bias; the sub-pixel rewrite needs a constant")
            put(bias, np.repeat(arr, s * s))
        m = kernel.shape[-1]
        mid = f"{node.output[0]}__subpixel"
        conv = helper.make_node("Conv", [node.input[0], node.input[1], *([bias] if bias else [])], [mid],
                                name=f"{node.name}__conv", kernel_shape=[m, m], pads=[m // 2] * 4, strides=[1, 1])
        d2s = helper.make_node("DepthToSpace", [mid], [node.output[0]], name=f"{node.name}__depth_to_space",
                               blocksize=s, mode="CRD")
        new_nodes += [conv, d2s]
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(new_nodes)
        del graph.value_info[:]  # inferred shapes of the rewritten weights no longer hold
        onnx.checker.check_model(model)
    onnx.save(model, str(dst or src))
    return count
