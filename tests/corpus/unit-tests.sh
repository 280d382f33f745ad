cd /workspace
mkdir -p pkg tests
n=$(awk -v s="$SEED" 'BEGIN{srand(s); print 3 + int(rand()*8)}')
cat > pkg/__init__.py <<'PY'
def add(a, b):
    return a + b
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
PY
: > tests/__init__.py
{ echo 'import unittest'; echo 'from pkg import add, fib'; echo 'class T(unittest.TestCase):'
  i=0; while [ $i -lt $n ]; do echo "    def test_$i(self): self.assertEqual(add($i, 1), $((i+1))); self.assertEqual(fib(10), 55)"; i=$((i+1)); done
} > tests/test_pkg.py
python3 -m unittest discover -q -s tests -t . 2>&1 | tail -1
