import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Idle OpenMP workers spin by default and steal the 2 cores from the server's event loop and
# engine threads; passive waiting must be set before torch is imported (see cli/main.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
