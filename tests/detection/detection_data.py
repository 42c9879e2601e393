"""Constants shared by the detection tests (a plain module: test files must not import ``conftest``)."""
SHAPE = (1, 16, 16)  # bundled Fashion-MNIST resized to 16x16 keeps every detector test fast
