"""Partial information decomposition (PID) of a discrete joint distribution p(x1, x2, y).

The information two sources X1, X2 carry about a target Y, I(X1,X2;Y), splits into four
non-negative parts: redundancy R (what either source alone tells about Y), uniqueness U1 and U2
(what only X1, only X2 tells) and synergy S (what only the two together tell), with

    R + U1 = I(X1;Y),   R + U2 = I(X2;Y),   R + U1 + U2 + S = I(X1,X2;Y).

Three equations do not fix four unknowns; the BROJA definitions (Bertschinger, Rauh, Olbrich,
Jost and Ay, "Quantifying unique information", Entropy 2014) close the system. Let Δ_p be the
distributions q(x1, x2, y) with the same pair marginals as p, q(x1, y) = p(x1, y) and
q(x2, y) = p(x2, y), and q* the one of least I_q(X1,X2;Y). Then

    U1 = I_q*(X1;Y|X2),   U2 = I_q*(X2;Y|X1),   R = I_p(X1;Y) − U1,
    S = I_p(X1,X2;Y) − I_q*(X1,X2;Y).

Every q in Δ_p has the same I(X1;Y) and I(X2;Y) as p, so what q* lacks of I_p(X1,X2;Y) is what
the pair marginals cannot show: synergy.

The estimator follows Liang et al., "Quantifying & Modeling Multimodal Interactions: An
Information Decomposition Framework" (NeurIPS 2023), github.com/pliang279/PID, `synthetic/rus.py`:
`solve_Q_new` (q* as a convex program in cvxpy, the objective a sum of `cp.rel_entr` terms) and
`get_measure` (the four parts from q*: their `CoI(Q)` is R above, `UI(Q, cond_id=1)` is U1,
`CI(P, Q)` is S). Two changes: the objective here is I_q(X1,X2;Y) itself rather than −H_q(Y|X1,X2)
plus a constant (the same minimiser, since q(y) = p(y) throughout Δ_p), and q has variables only
where both pair marginals are positive, since Δ_p forces q to 0 everywhere else. Values are in
bits (theirs are in nats).
"""

import numpy as np
from scipy import sparse

# An interior-point solver for the exponential cones of `rel_entr`, installed with cvxpy.
SOLVER = 'CLARABEL'


def decompose(joint: np.ndarray) -> dict[str, float]:
  """The BROJA partial information decomposition of two sources about a target.

  Args:
    joint: p[x1, x2, y], non-negative, any shape (n1, n2, ny); normalised inside.

  Returns:
    {'redundancy', 'unique_1', 'unique_2', 'synergy', 'total'} in bits ('total' = I(X1,X2;Y)).
    The four parts sum to 'total' up to the solver's tolerance (about 1e-8 bits).

  Raises:
    ValueError: `joint` is not 3-D, has a negative or non-finite entry, or sums to 0.
    RuntimeError: the solver finds no optimum.
  """
  p = _drop_unused_values(_normalised(joint))
  q = _least_synergy(p)
  total = _mutual_information(p.reshape(-1, p.shape[2]))
  unique_1 = _conditional_mutual_information(q)
  unique_2 = _conditional_mutual_information(q.transpose(1, 0, 2))
  return {
      'redundancy': _mutual_information(p.sum(axis=1)) - unique_1,
      'unique_1': unique_1,
      'unique_2': unique_2,
      'synergy': total - _mutual_information(q.reshape(-1, q.shape[2])),
      'total': total,
  }


def joint_from_samples(x1, x2, y, sizes=None) -> np.ndarray:
  """Empirical p[x1, x2, y] from integer arrays.

  Args:
    x1, x2, y: integer arrays of one length (any shape; flattened), values from 0.
    sizes: (n1, n2, ny), the number of values of each; default each array's max + 1.

  Returns:
    The frequencies of each (x1, x2, y), shape `sizes`, summing to 1.

  Raises:
    ValueError: the arrays are empty, of different lengths, not integers, or hold a value
      outside [0, size).
  """
  arrays = [np.asarray(a).ravel() for a in (x1, x2, y)]
  if len({a.size for a in arrays}) != 1 or arrays[0].size == 0:
    raise ValueError(f'x1, x2 and y must be non-empty and of one length, got '
                     f'{[a.size for a in arrays]}')
  if not all(np.issubdtype(a.dtype, np.integer) for a in arrays):
    raise ValueError(f'x1, x2 and y must be integer arrays, got {[a.dtype for a in arrays]}')
  sizes = tuple(int(a.max()) + 1 for a in arrays) if sizes is None else tuple(sizes)
  for name, a, size in zip(('x1', 'x2', 'y'), arrays, sizes):
    if a.min() < 0 or a.max() >= size:
      raise ValueError(f'{name} holds values in [{a.min()}, {a.max()}], outside [0, {size})')
  counts = np.bincount(np.ravel_multi_index(arrays, sizes), minlength=int(np.prod(sizes)))
  return (counts / counts.sum()).reshape(sizes)


def _normalised(joint) -> np.ndarray:
  p = np.asarray(joint, dtype=np.float64)
  if p.ndim != 3:
    raise ValueError(f'joint must be p[x1, x2, y] (3-D), got shape {p.shape}')
  if not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
    raise ValueError('joint must be finite and non-negative with a positive sum')
  return p / p.sum()


def _drop_unused_values(p: np.ndarray) -> np.ndarray:
  """p without the values of x1, x2 or y of probability 0 (they change no information)."""
  for axis in range(3):
    others = tuple(a for a in range(3) if a != axis)
    p = np.compress(p.sum(axis=others) > 0, p, axis=axis)
  return p


def _least_synergy(p: np.ndarray) -> np.ndarray:
  """q* = argmin over q in Δ_p of I_q(X1,X2;Y), shape of p."""
  # Imported here: cvxpy takes seconds to import, and every process that imports mmjax's
  # evaluators (the CLI included) would pay it.
  import cvxpy as cp  # pylint: disable=g-import-not-at-top
  p1y, p2y, py = p.sum(axis=1), p.sum(axis=0), p.sum(axis=(0, 1))
  # Outside these cells q(x1, y) = 0 or q(x2, y) = 0 with q >= 0 forces q = 0.
  x1, x2, y = np.nonzero((p1y[:, None, :] > 0) & (p2y[None, :, :] > 0))
  q = cp.Variable(x1.size, nonneg=True)
  sums_x1y, sums_x2y, sums_x1x2 = (_indicator(rows) for rows in (
      x1 * p.shape[2] + y, x2 * p.shape[2] + y, x1 * p.shape[1] + x2))
  constraints = [sums_x1y @ q == _at_cells(p1y, x1 * p.shape[2] + y),
                 sums_x2y @ q == _at_cells(p2y, x2 * p.shape[2] + y)]
  # I_q(X1,X2;Y) = Σ q log(q / (q(x1, x2) p(y))): q(y) = p(y) on Δ_p keeps the second argument
  # affine in q, so the objective is convex (DCP).
  product = cp.multiply(py[y], sums_x1x2.T @ (sums_x1x2 @ q))
  problem = cp.Problem(cp.Minimize(cp.sum(cp.rel_entr(q, product))), constraints)
  problem.solve(solver=SOLVER)
  # cvxpy warns itself when it returns an inaccurate optimum.
  if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
    raise RuntimeError(f'{SOLVER} found no q* for the PID (status {problem.status})')
  solution = np.zeros_like(p)
  # An interior-point solution may hold entries a little below 0 (within its tolerance).
  solution[x1, x2, y] = np.maximum(q.value, 0.0)
  return solution


def _indicator(rows: np.ndarray) -> sparse.csr_matrix:
  """The 0/1 matrix that sums the variables into groups: row r sums those with rows == r."""
  _, group = np.unique(rows, return_inverse=True)
  ones = np.ones(rows.size)
  return sparse.csr_matrix((ones, (group, np.arange(rows.size))),
                           shape=(group.max() + 1, rows.size))


def _at_cells(marginal: np.ndarray, cells: np.ndarray) -> np.ndarray:
  """`marginal` (2-D) at the distinct flat indices `cells`, in `_indicator`'s row order."""
  return marginal.ravel()[np.unique(cells)]


def _mutual_information(pxy: np.ndarray) -> float:
  """I(X;Y) in bits of a 2-D joint p[x, y]."""
  outer = pxy.sum(axis=1, keepdims=True) * pxy.sum(axis=0, keepdims=True)
  used = pxy > 0
  return float(np.sum(pxy[used] * np.log2(pxy[used] / outer[used])))


def _conditional_mutual_information(p: np.ndarray) -> float:
  """I(X1;Y|X2) in bits of p[x1, x2, y]: Σ p log(p p(x2) / (p(x1, x2) p(x2, y)))."""
  p_x2 = p.sum(axis=(0, 2), keepdims=True)
  p_x1x2 = p.sum(axis=2, keepdims=True)
  p_x2y = p.sum(axis=0, keepdims=True)
  used = p > 0
  ratio = (p * p_x2)[used] / (p_x1x2 * p_x2y)[used]
  return float(np.sum(p[used] * np.log2(ratio)))
