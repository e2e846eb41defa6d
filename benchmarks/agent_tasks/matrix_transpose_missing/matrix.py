"""A small dense matrix for the layout engine."""


class Matrix:
    def __init__(self, rows: list[list[float]]):
        if not rows or any(len(r) != len(rows[0]) for r in rows):
            raise ValueError("rows must be non-empty and of equal length")
        self.rows = [list(r) for r in rows]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.rows[0])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Matrix) and self.rows == other.rows

    def __matmul__(self, other: "Matrix") -> "Matrix":
        n, k = self.shape
        k2, m = other.shape
        if k != k2:
            raise ValueError(f"cannot multiply {self.shape} by {other.shape}")
        return Matrix([[sum(self.rows[i][x] * other.rows[x][j] for x in range(k)) for j in range(m)]
                       for i in range(n)])

    def __repr__(self) -> str:
        return f"Matrix({self.rows})"
