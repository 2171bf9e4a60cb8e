"""Layer arithmetic: every layer's output shape and parameter count, with the formula.

    >>> from fastcourse.lessons.explain import explain
    >>> explain("alexnet")[["layer", "output_shape", "shape_formula"]]

Shapes follow output = (N - F + 2P)/S + 1 (rounded down) and parameters F*F*D*K + K; both are
computed from each layer's config and checked against what Keras itself built
(`matches_keras`), so the table is the arithmetic the lessons teach, verified.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Optional, Sequence

import keras
import pandas as pd

COLUMNS = ["layer", "type", "output_shape", "params", "shape_formula", "params_formula", "macs", "matches_keras"]


def explain(
    model: keras.Model | str,
    input_shape: Optional[Sequence[int]] = None,
    num_classes: Optional[int] = None,
    **builder_args: Any,
) -> pd.DataFrame:
    """A DataFrame with one row per layer (nested models are expanded, named `outer/inner`).

    `model` is a keras.Model or a registered builder name; for a name, `input_shape` and
    `num_classes` default to the builder's own defaults. Columns: layer, type, output_shape,
    params, shape_formula, params_formula, macs (multiply-accumulates per image) and
    matches_keras (the computed shape and count equal Keras').
    """
    if isinstance(model, str):
        model = build(model, input_shape, num_classes, **builder_args)
    rows = list(_rows(model, prefix=""))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs["model"] = model.name
    table.attrs["total_params"] = int(model.count_params())
    return table


def build(
    name: str, input_shape: Optional[Sequence[int]] = None, num_classes: Optional[int] = None, **builder_args: Any
) -> keras.Model:
    """Build a registered model with its own defaults for whatever is not given."""
    from fastcourse.models import MODELS, build_model

    params = inspect.signature(MODELS.get(name)).parameters

    def default(key, fallback):
        p = params.get(key)
        return p.default if p is not None and p.default is not inspect.Parameter.empty else fallback

    if "weights" in params and "weights" not in builder_args:
        builder_args["weights"] = None  # the arithmetic needs no pretrained weights (nor a download)
    shape = tuple(int(d) for d in (input_shape or default("input_shape", (224, 224, 3))))
    classes = int(num_classes or default("num_classes", 1000))
    return build_model(name, shape, classes, **builder_args)


def summary(table: pd.DataFrame) -> dict[str, float]:
    """Totals, and the share of parameters and of compute in conv vs dense layers."""
    conv = table["type"].str.startswith(("Conv", "DepthwiseConv"))
    dense = table["type"] == "Dense"
    params, macs = table["params"].sum(), table["macs"].sum()
    return {
        "total_params": int(params),
        "total_macs": int(macs),
        "conv_params_share": float(table.loc[conv, "params"].sum() / params) if params else 0.0,
        "dense_params_share": float(table.loc[dense, "params"].sum() / params) if params else 0.0,
        "conv_macs_share": float(table.loc[conv, "macs"].sum() / macs) if macs else 0.0,
        "dense_macs_share": float(table.loc[dense, "macs"].sum() / macs) if macs else 0.0,
    }


def parse_shape(text: str) -> tuple[int, ...]:
    """'227,227,3' or '227x227x3' -> (227, 227, 3)."""
    parts = text.replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) not in (1, 2, 3) or any(d < 1 for d in shape):
        raise ValueError(f"input shape {text!r}: give positive sizes like 227,227,3 (H,W,C)")
    return shape


# --- per-layer arithmetic ----------------------------------------------------------------


def _rows(model: keras.Model, prefix: str):
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # a nested backbone: show its layers
            yield from _rows(layer, f"{prefix}{layer.name}/")
            continue
        try:
            in_shape = _shape(layer.input)
        except (AttributeError, ValueError):  # a layer shared between several calls
            in_shape = None
        out_shape = _shape(layer.output)
        keras_params = int(layer.count_params()) if layer.built else 0
        shape, shape_f, params, params_f, macs = _arithmetic(layer, in_shape)
        if shape is None:
            shape = out_shape
            shape_f = "same" if in_shape == out_shape else shape_f
        if params is None:
            params, params_f = keras_params, params_f or f"{keras_params:,} (from Keras)"
        yield {
            "layer": prefix + layer.name,
            "type": type(layer).__name__,
            "output_shape": _fmt(out_shape),
            "params": keras_params,
            "shape_formula": shape_f,
            "params_formula": params_f,
            "macs": int(macs),
            "matches_keras": tuple(shape) == tuple(out_shape) and params == keras_params,
        }


def _arithmetic(layer, in_shape):
    """(shape, shape formula, params, params formula, MACs) from the layer's config; None = not modelled."""
    L = keras.layers
    if isinstance(layer, L.InputLayer):
        return None, "input", 0, "0", 0
    if in_shape is None:  # a merge (Add, Multiply) of several inputs: shape and count from Keras
        return None, "", None, "", 0
    if isinstance(layer, (L.Conv2D, L.Conv1D)) and not isinstance(layer, (L.Conv2DTranspose, L.DepthwiseConv2D)):
        nd = len(layer.kernel_size)
        spatial = in_shape[:nd]
        d, k = in_shape[-1], layer.filters
        dims, formulas = _window(spatial, layer.kernel_size, layer.strides, layer.padding, layer.dilation_rate)
        shape = (*dims, k)
        fsz = "*".join(str(f) for f in layer.kernel_size)
        d_in = d // layer.groups
        params = math.prod(layer.kernel_size) * d_in * k + (k if layer.use_bias else 0)
        params_f = f"{fsz}*{d_in}*{k}" + (f" + {k}" if layer.use_bias else "") + f" = {params:,}"
        macs = math.prod(dims) * math.prod(layer.kernel_size) * d_in * k
        return shape, _join(formulas), params, params_f, macs
    if isinstance(layer, L.DepthwiseConv2D):  # one F*F filter per input channel (MobileNet, EfficientNet)
        d, k = in_shape[-1], in_shape[-1] * layer.depth_multiplier
        dims, formulas = _window(in_shape[:2], layer.kernel_size, layer.strides, layer.padding, layer.dilation_rate)
        fsz = "*".join(str(f) for f in layer.kernel_size)
        params = math.prod(layer.kernel_size) * k + (k if layer.use_bias else 0)
        params_f = f"{fsz}*{k}" + (f" + {k}" if layer.use_bias else "") + f" = {params:,}"
        return (*dims, k), _join(formulas), params, params_f, math.prod(dims) * math.prod(layer.kernel_size) * k
    if isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D, L.MaxPooling1D, L.AveragePooling1D)):
        nd = len(layer.pool_size)
        dims, formulas = _window(in_shape[:nd], layer.pool_size, layer.strides, layer.padding, (1,) * nd)
        return (*dims, in_shape[-1]), _join(formulas), 0, "0", 0
    if isinstance(layer, L.ZeroPadding2D):
        (t, b), (left, right) = layer.padding
        h, w, c = in_shape
        return (
            (h + t + b, w + left + right, c),
            f"{h} + {t + b} = {h + t + b}; {w} + {left + right} = {w + left + right}",
            0,
            "0",
            0,
        )
    if isinstance(layer, L.Dense):
        d, k = in_shape[-1], layer.units
        params = d * k + (k if layer.use_bias else 0)
        return (
            (*in_shape[:-1], k),
            f"units = {k}",
            params,
            f"{d}*{k}" + (f" + {k}" if layer.use_bias else "") + f" = {params:,}",
            math.prod(in_shape) * k,
        )
    if isinstance(layer, L.Flatten):
        n = math.prod(in_shape)
        return (n,), "*".join(str(s) for s in in_shape) + f" = {n:,}", 0, "0", 0
    if isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)):
        return (in_shape[-1],), "channels", 0, "0", 0
    if isinstance(layer, L.BatchNormalization):
        axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
        c = in_shape[axis - 1 if axis > 0 else axis]  # in_shape has no batch axis
        learned = int(layer.center) + int(layer.scale)
        n = (learned + 2) * c
        return tuple(in_shape), "same", n, f"{learned + 2}*{c} (gamma, beta, moving mean, variance) = {n:,}", 0
    if isinstance(layer, L.Normalization):  # constants or adapted statistics: Keras counts those
        return tuple(in_shape), "same", None, "", 0
    if isinstance(layer, (L.Dropout, L.Activation, L.ReLU, L.Softmax, L.Rescaling)):
        return tuple(in_shape), "same", 0, "0", 0
    return None, "", None, "", 0


def _window(spatial, size, strides, padding, dilation):
    """Output sizes of a sliding window per spatial axis, and the formula for each axis."""
    dims, formulas = [], []
    for n, f, s, dil in zip(spatial, size, strides, dilation):
        f_eff = dil * (f - 1) + 1
        if padding == "same":
            out = math.ceil(n / s)
            pad = max((out - 1) * s + f_eff - n, 0)  # total padding; P = pad / 2
        else:
            pad = 0
            out = (n - f_eff) // s + 1
        p = f"{pad // 2}" if pad % 2 == 0 else f"{pad / 2:g}"
        exact = (n - f_eff + pad) / s + 1
        rounding = "" if exact == out else f" -> {out}"
        formulas.append(f"({n} - {f_eff} + 2*{p})/{s} + 1 = {exact:g}{rounding}")
        dims.append(out)
    return dims, formulas


def _join(formulas: list[str]) -> str:
    """One formula when every axis has the same (a square image), else one per axis."""
    return formulas[0] if len(set(formulas)) == 1 else "; ".join(formulas)


def _shape(tensor) -> Optional[tuple[int, ...]]:
    if tensor is None or isinstance(tensor, (list, tuple)):
        return None
    return tuple(int(d) for d in tensor.shape[1:])


def _fmt(shape) -> str:
    return "x".join(str(d) for d in shape) if shape else ""
