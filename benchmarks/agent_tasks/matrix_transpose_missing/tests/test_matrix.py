from matrix import Matrix


def test_transpose():
    m = Matrix([[1, 2, 3], [4, 5, 6]])
    assert m.transpose() == Matrix([[1, 4], [2, 5], [3, 6]])
    assert m.transpose().shape == (3, 2)


def test_original_unchanged():
    m = Matrix([[1, 2], [3, 4]])
    m.transpose()
    assert m.rows == [[1, 2], [3, 4]]


def test_T_property():
    m = Matrix([[1, 2]])
    assert m.T == Matrix([[1], [2]])


def test_gram_matrix():
    m = Matrix([[1, 2], [3, 4]])
    assert m @ m.T == Matrix([[5, 11], [11, 25]])
