"""The partial information decomposition (mmjax.pid): distributions whose BROJA parts are known in
closed form, dit's BROJA on random ones, the empirical joint from samples, and bad input."""

import itertools

import numpy as np
import pytest

from mmjax import pid

# The solver's tolerance: on these problems the parts come out within 1e-8 bits of the exact ones.
EXACT = 1e-6


def _of_uniform_inputs(n, function):
  """p(x1, x2, y) of x1, x2 independent and uniform over n values and y = function(x1, x2)."""
  x1, x2 = np.meshgrid(np.arange(n), np.arange(n), indexing='ij')
  return pid.joint_from_samples(x1, x2, function(x1, x2))


def _assert_parts(found, redundancy=0.0, unique_1=0.0, unique_2=0.0, synergy=0.0):
  expected = {'redundancy': redundancy, 'unique_1': unique_1, 'unique_2': unique_2,
              'synergy': synergy, 'total': redundancy + unique_1 + unique_2 + synergy}
  assert found == pytest.approx(expected, abs=EXACT)


def test_xor_is_one_bit_of_synergy():
  _assert_parts(pid.decompose(_of_uniform_inputs(2, np.bitwise_xor)), synergy=1.0)


def test_copies_of_one_bit_are_one_bit_of_redundancy():
  bit = np.arange(2)
  _assert_parts(pid.decompose(pid.joint_from_samples(bit, bit, bit)), redundancy=1.0)


def test_a_target_copied_from_one_source_is_unique_to_it():
  """Y = X1 with X2 independent noise, then the same with the sources' roles swapped: catches
  unique_1 and unique_2 exchanged."""
  _assert_parts(pid.decompose(_of_uniform_inputs(2, lambda x1, x2: x1)), unique_1=1.0)
  _assert_parts(pid.decompose(_of_uniform_inputs(2, lambda x1, x2: x2)), unique_2=1.0)


def test_and_is_redundancy_and_half_a_bit_of_synergy():
  """BROJA's AND: R = I(X1;Y) = h(1/4) - 1/2 ≈ 0.311 bits, S = 1/2 bit, no unique information
  (the minimiser is not p itself, unlike XOR's and COPY's)."""
  h = -(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75))
  _assert_parts(pid.decompose(_of_uniform_inputs(2, np.bitwise_and)), redundancy=h - 0.5,
                synergy=0.5)


def test_parity_of_two_digits_is_one_bit_of_synergy():
  joint = _of_uniform_inputs(10, lambda x1, x2: (x1 + x2) % 2)
  assert joint.shape == (10, 10, 2)
  _assert_parts(pid.decompose(joint), synergy=1.0)


def test_one_digit_seen_by_both_sources_is_log2_10_bits_of_redundancy():
  digit = np.arange(10)
  _assert_parts(pid.decompose(pid.joint_from_samples(digit, digit, digit)),
                redundancy=np.log2(10))


def _random_joints(seed=0):
  """Three dense 3x3x2 joints and one 3x2x4 with about 40% of its cells at 0."""
  rng = np.random.default_rng(seed)
  joints = [rng.dirichlet(np.ones(18)).reshape(3, 3, 2) for _ in range(3)]
  sparse_joint = rng.dirichlet(np.ones(24)).reshape(3, 2, 4)
  sparse_joint[rng.random(sparse_joint.shape) < 0.4] = 0
  return joints + [sparse_joint / sparse_joint.sum()]


def test_agrees_with_dits_broja_on_random_distributions():
  """dit's admUI solver (alternating divergence minimisation, Banerjee et al. 2017) converges to
  the BROJA optimum; its default on small alphabets (SLSQP with random restarts) was seen off by
  up to 0.017 bits on these joints, and differs from run to run."""
  dit = pytest.importorskip('dit')
  for joint in _random_joints():
    cells = [c for c in itertools.product(*map(range, joint.shape)) if joint[c] > 0]
    reference = dit.pid.PID_BROJA(
        dit.Distribution([''.join(map(str, c)) for c in cells], [joint[c] for c in cells]),
        method='admui')
    found = pid.decompose(joint)
    expected = {'redundancy': reference.get_pi(((0,), (1,))),
                'unique_1': reference.get_pi(((0,),)), 'unique_2': reference.get_pi(((1,),)),
                'synergy': reference.get_pi(((0, 1),))}
    assert {k: found[k] for k in expected} == pytest.approx(expected, abs=1e-4), joint


def test_the_parts_are_non_negative_and_sum_to_the_mutual_information():
  for joint in _random_joints(seed=1):
    found = pid.decompose(joint)
    pxy = joint.reshape(-1, joint.shape[2])
    outer = pxy.sum(axis=1, keepdims=True) * pxy.sum(axis=0, keepdims=True)
    used = pxy > 0
    information = np.sum(pxy[used] * np.log2(pxy[used] / outer[used]))
    assert found['total'] == pytest.approx(information, abs=1e-12)
    parts = [found[k] for k in ('redundancy', 'unique_1', 'unique_2', 'synergy')]
    assert sum(parts) == pytest.approx(information, abs=EXACT)
    assert min(parts) > -EXACT


def test_counts_and_values_that_never_occur_change_nothing():
  """The joint is normalised inside, and a value of x1, x2 or y of probability 0 is dropped."""
  joint = _random_joints()[0]
  padded = np.zeros((5, 4, 3))
  padded[1:4, :3, 1:] = 1000 * joint
  assert pid.decompose(padded) == pytest.approx(pid.decompose(joint), abs=EXACT)


def test_joint_from_samples_counts_each_triple():
  x1, x2, y = [0, 0, 1, 1], [0, 2, 0, 2], [1, 1, 0, 1]
  expected = np.zeros((2, 3, 2))
  expected[0, 0, 1] = expected[0, 2, 1] = expected[1, 0, 0] = expected[1, 2, 1] = 0.25
  np.testing.assert_array_equal(pid.joint_from_samples(x1, x2, y), expected)
  # `sizes` makes room for values the sample does not hold; repeats add up.
  wider = pid.joint_from_samples(np.array([[0], [0]]), [1, 1], [0, 2], sizes=(2, 3, 4))
  assert wider.shape == (2, 3, 4) and wider[0, 1, 0] == wider[0, 1, 2] == 0.5
  assert wider.sum() == 1.0


@pytest.mark.parametrize('x1, x2, y, sizes, match', [
    ([0, 1], [0, 1], [0], None, 'one length'),
    ([], [], [], None, 'non-empty'),
    ([0.0, 1.0], [0, 1], [0, 1], None, 'integer'),
    ([0, -1], [0, 1], [0, 1], None, 'x1 holds values'),
    ([0, 1], [0, 1], [0, 2], (2, 2, 2), 'y holds values'),
])
def test_joint_from_samples_refuses_bad_samples(x1, x2, y, sizes, match):
  with pytest.raises(ValueError, match=match):
    pid.joint_from_samples(x1, x2, y, sizes)


@pytest.mark.parametrize('joint', [np.ones((2, 2)), -np.ones((2, 2, 2)), np.zeros((2, 2, 2)),
                                   np.full((2, 2, 2), np.nan)])
def test_decompose_refuses_what_is_not_a_distribution(joint):
  with pytest.raises(ValueError, match='joint must'):
    pid.decompose(joint)
