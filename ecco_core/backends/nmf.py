"""scikit-learn's coordinate-descent NMF in torch alone: the factors' fit, shipped as source to run beside the model.

:func:`ecco_core.factors.factors` fits NMF with scikit-learn on this machine
(the reference). A factors session (:func:`ecco_core.backends.sessions.factors`)
fits on the server, where the FFN activations are, with :func:`fit`: the same
algorithm step for step, so that only the factors come back, not the
activations. :mod:`ecco_core.backends.sessions` registers this module with
``nnsight.register``, so each function travels by value with the request:
torch and the standard library alone, no numpy and nothing of this project.

What is reproduced (scikit-learn 1.9, ``NMF(init="nndsvda", solver="cd")``,
no regularisation, no shuffle):

- the start: ``_initialize_nmf``'s NNDSVDa on ``_randomized_svd`` (power
  iterations normalised by LU with partial pivoting, then QR, then the SVD of
  the small projection). Its Gaussian draw comes from numpy's
  ``RandomState(seed)``, which torch cannot repeat: the caller draws it (a
  small matrix, ``min(n_samples, n_features) x (n_components + 10)``) and
  sends it (:func:`ecco_core.factors.nmf_start_draw`);
- each iteration: W's columns, then H's rows, each updated by
  ``_update_cdnmf_fast``'s rule. For a fixed component the update of one row
  of W (of H's transpose) reads only that row, so one component is updated
  for every row at once; the gradient is summed over the components in the
  same order, one float32 rounding per product and per sum, as the Cython loop does;
- the stopping rule: the projected gradient's total against the first
  iteration's, at ``tol``.

The trap: the products (X H^T, H H^T, the SVD's) go through another BLAS than
numpy's, so the results agree to float32 precision, not bit for bit; and
scikit-learn sums the projected gradient in float32, one entry after the
other, which no vectorised sum repeats, so this sums it in float64: a
stopping ratio within about 1e-5 (relative) of ``tol`` may stop one
iteration apart.
"""

from __future__ import annotations

import math

import torch

#: scikit-learn's ``_randomized_svd`` default: columns drawn beyond the components asked for.
OVERSAMPLES = 10
#: ``_initialize_nmf``'s ``eps``: start entries below it are zero (then NNDSVDa's mean).
START_EPS = 1e-6


def start_draw_shape(n_samples: int, n_features: int, n_components: int) -> tuple[int, int]:
    """The shape of the Gaussian draw :func:`fit` starts from: that of ``_randomized_range_finder``'s ``Q``."""
    return min(n_samples, n_features), n_components + OVERSAMPLES


def _lu_permuted_l(a):
    """``scipy.linalg.lu(a, permute_l=True)[0]``: P @ L of a (m, n) matrix with m >= n, without the (m, m) P."""
    factors, pivots, _ = torch.linalg.lu_factor_ex(a)  # a zero pivot is no error: scipy goes on too
    n = a.shape[1]
    lower = torch.tril(factors, -1)[:, :n] + torch.eye(a.shape[0], n, dtype=a.dtype, device=a.device)
    order = list(range(a.shape[0]))
    for row, pivot in enumerate(pivots.tolist()):  # LAPACK's row swaps, 1-based, in order
        order[row], order[pivot - 1] = order[pivot - 1], order[row]
    permuted = torch.empty_like(lower)
    permuted[torch.tensor(order, device=a.device)] = lower
    return permuted


def randomized_svd(x, n_components: int, draw):
    """``sklearn.utils.extmath._randomized_svd(x, n_components)`` from its Gaussian draw ``draw``.

    Returns ``(u, s, v)``: (n_samples, n_components), (n_components,),
    (n_components, n_features); the signs of the singular vectors may differ
    (NNDSVD does not read them).
    """
    transpose = x.shape[0] < x.shape[1]
    a = x.T if transpose else x
    n_iter = 7 if n_components < 0.1 * min(x.shape) else 4
    q = draw.to(dtype=x.dtype, device=x.device)
    for _ in range(n_iter):  # n_iter > 2: scikit-learn normalises by LU
        q = _lu_permuted_l(a @ q)
        q = _lu_permuted_l(a.T @ q)
    q = torch.linalg.qr(a @ q, mode="reduced").Q
    u_hat, s, vt = torch.linalg.svd(q.T @ a, full_matrices=False)
    u = q @ u_hat
    if transpose:
        return vt[:n_components].T, s[:n_components], u[:, :n_components].T
    return u[:, :n_components], s[:n_components], vt[:n_components]


def nndsvda(x, n_components: int, draw):
    """``sklearn.decomposition._nmf._initialize_nmf(x, n_components, init="nndsvda")``: the start (W, H)."""
    u, s, v = randomized_svd(x, n_components, draw)
    w = torch.zeros_like(u)
    h = torch.zeros_like(v)
    w[:, 0] = torch.sqrt(s[0]) * u[:, 0].abs()
    h[0] = torch.sqrt(s[0]) * v[0].abs()
    for j in range(1, n_components):
        x_part, y_part = u[:, j], v[j]
        x_p, y_p = x_part.clamp_min(0), y_part.clamp_min(0)
        x_n, y_n = (-x_part).clamp_min(0), (-y_part).clamp_min(0)
        x_p_nrm, y_p_nrm = math.sqrt(float(x_p @ x_p)), math.sqrt(float(y_p @ y_p))
        x_n_nrm, y_n_nrm = math.sqrt(float(x_n @ x_n)), math.sqrt(float(y_n @ y_n))
        m_p, m_n = x_p_nrm * y_p_nrm, x_n_nrm * y_n_nrm
        if m_p > m_n:
            left, right, sigma = x_p / x_p_nrm, y_p / y_p_nrm, m_p
        else:
            left, right, sigma = x_n / x_n_nrm, y_n / y_n_nrm, m_n
        scale = torch.sqrt(s[j] * sigma)
        w[:, j] = scale * left
        h[j] = scale * right
    w[w < START_EPS] = 0
    h[h < START_EPS] = 0
    average = x.mean()
    w[w == 0] = average
    h[h == 0] = average
    return w, h


def _update(x, wt, ht) -> float:
    """One half-iteration: ``_update_coordinate_descent(x, W, Ht)`` with ``wt`` = W transposed (n_components,
    n_rows), updated in place; ``ht`` is Ht transposed (n_components, n_columns), x (n_rows, n_columns).
    Returns the projected gradient's total (float64)."""
    hht = (ht @ ht.T).tolist()  # float32 values, exact as Python floats: a product with one rounds as float32's
    xht = ht @ x.T  # XHt transposed, (n_components, n_rows): x.T is the contiguous X in the H half
    product = torch.empty_like(wt[0])
    violation = 0.0
    for t in range(wt.shape[0]):
        grad = -xht[t]
        for r in range(wt.shape[0]):  # one rounding per product and per sum, in the Cython loop's order
            grad.add_(torch.mul(wt[r], hht[t][r], out=product))
        projected = torch.where(wt[t] == 0, grad.clamp_max(0), grad)
        violation += float(projected.abs().sum(dtype=torch.float64))
        if hht[t][t] != 0:
            wt[t] = (wt[t] - grad / hht[t][t]).clamp_min(0)
    return violation


def fit(x, n_components: int, draw, *, max_iter: int, tol: float, report=None) -> dict:
    """``NMF(n_components, init="nndsvda", solver="cd", max_iter, tol).fit_transform(x)`` in torch.

    ``x`` is a non-negative (n_samples, n_features) float tensor, ``draw`` the
    start's Gaussian draw of shape :func:`start_draw_shape` (numpy's
    ``RandomState(seed).normal``, as float32). ``report(n_iter)``, if given,
    is called after every iteration (an exception it raises stops the fit).

    Returns a dict of ``w`` (n_samples, n_components), ``h`` (n_components,
    n_features) and ``n_iter`` (int): scikit-learn's ``fit_transform`` result,
    ``components_`` and ``n_iter_``.
    """
    w, h = nndsvda(x, n_components, draw)
    wt, ht = w.T.contiguous(), h.contiguous()
    violation_init = None
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        violation = _update(x, wt, ht) + _update(x.T, ht, wt)
        if report is not None:
            report(n_iter)
        if n_iter == 1:
            violation_init = violation
        if violation_init == 0 or violation / violation_init <= tol:
            break
    return {"w": wt.T.contiguous(), "h": ht, "n_iter": n_iter}


def summary(x, fitted: dict, top_k: int, loadings: bool, max_chunk_bytes: int = 16 * 2**20) -> dict:
    """What a view needs of the fit ``fitted`` (:func:`fit`) of ``x`` (n_samples, n_features), on the CPU.

    ``token_activations``: W; ``top_columns`` and ``top_loadings`` (n_components,
    min(top_k, n_features)): each component's columns by loading magnitude,
    strongest first (ties: the lower column first, as numpy's stable argsort),
    and their loadings; ``components``: H when ``loadings``, else None;
    ``n_iter``; and, in float64, the squared sums of the residual, of ``x`` and
    of ``x`` about its column means, a block of rows at a time, as
    :func:`ecco_core.factors._fit_sums` takes them.
    """
    w, h = fitted["w"], fitted["h"]
    column_mean = x.double().mean(dim=0)
    rows = max(1, max_chunk_bytes // (8 * x.shape[1]))
    residual = total = variance = 0.0
    for start in range(0, x.shape[0], rows):
        block = x[start:start + rows]
        residual += float(((block - w[start:start + rows] @ h) ** 2).sum(dtype=torch.float64))
        total += float((block.double() ** 2).sum())
        variance += float(((block.double() - column_mean) ** 2).sum())
    top = torch.sort(-h.abs(), dim=1, stable=True).indices[:, :min(top_k, h.shape[1])].clone()  # not a view:
    # torch.save writes a view's whole storage, every column's rank
    return {"token_activations": w.cpu(), "top_columns": top.cpu(), "top_loadings": h.gather(1, top).cpu(),
            "components": h.cpu() if loadings else None, "n_iter": fitted["n_iter"], "residual": residual,
            "total": total, "variance": variance}
