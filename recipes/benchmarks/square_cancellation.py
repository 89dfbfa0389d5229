"""Accuracy of the square loss when f_y^2 dominates sum_i f_i^2 (M = 30): Gram path against float32 logits.

Inputs in float32 whose logits are, in exact arithmetic, ``M e_y + sigma * z`` (orthogonal output rows, so that
``sum_{i != y} f_i^2 ~ sigma^2 V`` while ``f_y^2 = 900``). For each sigma the script prints the largest absolute
error of ``V * loss`` (that is, of ``k (f_y - M)^2 + sum_{i != y} f_i^2``) and the median relative error of the
hidden-state gradient, against float64 on the same float32 inputs, for

* ``linear_square_loss`` (float32 Gram matrix), and
* ``square_loss`` on float32 logits ``hidden @ weight.T`` (the materialised path),

and, to show where the Gram path's error comes from, the value error with the quadratic form ``h^T G h`` evaluated
in float64 (Gram matrix still float32) and with the Gram matrix in float64.

    python recipes/benchmarks/square_cancellation.py
"""

from __future__ import annotations

import sys

import torch

from hf_squareloss import linear_square_loss, square_loss

K, M = 15.0, 30.0


def case(sigma: float, n: int = 512, v: int = 200, d: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, v, generator=g, dtype=torch.float64))
    weight = 0.05 * q.T  # orthogonal rows of norm 0.05
    labels = torch.randint(0, v, (n,), generator=g)
    f = sigma * torch.randn(n, v, generator=g, dtype=torch.float64)
    f[torch.arange(n), labels] = M
    hidden = f @ weight / 0.05**2
    return hidden.float(), weight.float(), labels


def variant(hidden, weight, labels, gram_dtype, form_dtype) -> torch.Tensor:
    gram = (weight.to(gram_dtype).T @ weight.to(gram_dtype)).to(form_dtype)
    h, w = hidden.to(form_dtype), weight.to(form_dtype)
    f_y = (w[labels] * h).sum(-1)
    total = ((h @ gram) * h).sum(-1)
    return ((total - f_y * f_y).clamp_min(0) + K * (f_y - M) ** 2).double()


def main() -> int:
    torch.set_num_threads(1)
    print(
        f"k={K:g}, M={M:g}, N=512, V=200, d=256; errors of V * loss and of the gradient of hidden, against float64"
    )
    print(
        "| sigma | sum_{i!=y} f_i^2 (median) | Gram float32 | float32 logits | Gram f32 + form f64 | Gram f64 "
        "| grad rel. err, Gram | grad rel. err, logits |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for sigma in (1.0, 0.1, 0.01, 0.001):
        hidden, weight, labels = case(sigma)
        v = weight.shape[0]
        h64 = hidden.double().requires_grad_(True)
        f64 = h64 @ weight.double().T
        truth = square_loss(f64, labels, k=K, M=M, reduction="none")
        truth.sum().backward()
        others = (f64.detach() ** 2).sum(-1) - f64.detach()[torch.arange(len(labels)), labels] ** 2
        h_gram = hidden.clone().requires_grad_(True)
        gram = linear_square_loss(h_gram, weight, labels, k=K, M=M, reduction="none")
        gram.sum().backward()
        h_logits = hidden.clone().requires_grad_(True)
        logits = square_loss(h_logits @ weight.T, labels, k=K, M=M, reduction="none")
        logits.sum().backward()

        reference = truth.detach() * v
        err = lambda times_v, ref=reference: float((times_v.double() - ref).abs().max())  # noqa: E731
        grad_err = lambda grad, ref=h64.grad: float(  # noqa: E731
            ((grad.double() - ref).norm(dim=-1) / ref.norm(dim=-1)).median()
        )

        form64 = variant(hidden, weight, labels, torch.float32, torch.float64)
        gram64 = variant(hidden, weight, labels, torch.float64, torch.float64)
        print(
            f"| {sigma:g} | {float(others.median()):.3g} | {err(gram.detach() * v):.1e} | {err(logits.detach() * v):.1e} | "
            f"{err(form64):.1e} | {err(gram64):.1e} | {grad_err(h_gram.grad):.1e} | {grad_err(h_logits.grad):.1e} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
