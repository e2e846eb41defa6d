"""MBPP+ inputs get back the Python types JSON lost, taken from the task's own example calls."""

from qcoder.eval.input_types import restore


def test_tuples_sets_and_numbers_from_the_examples():
    assertion = "assert f([5, 6], (9, 10), {1, 2}, 1j) == 3\n"
    restored = restore([[[1], [2, 3], [4], "2+1j"]], assertion, "f")
    assert restored == [[[1], (2, 3), {4}, 2 + 1j]]
    assert isinstance(restored[0][1], tuple) and isinstance(restored[0][2], set)


def test_nesting_deeper_than_the_example_keeps_the_container_type():
    restored = restore([[[1, [2, [3, [4]]], 5]]], "assert g((4, (7, 6), 8)) == 0", "g")
    assert restored == [[(1, (2, (3, (4,))), 5)]]


def test_dict_values_and_untyped_calls_left_alone():
    assertion = "assert h({'a': (1, 2)}, x) == 1\nassert h({'b': (3, 4)}, 2) == 2"
    assert restore([[{"z": [5, 6]}, [7]]], assertion, "h") == [[{"z": (5, 6)}, [7]]]
    assert restore([[[1, 2]]], "assert other((1, 2))", "h") == [[[1, 2]]]
