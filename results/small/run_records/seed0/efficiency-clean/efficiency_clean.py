"""Clean search-cost timing for the efficiency notebook at the small scale: main (dynamic FFN) then
the fixed-dimension ablation, sequentially, alone on the machine, 2 threads, bf16, search stages only."""
import os, sys, time, torch
os.environ.setdefault("ELMLIB_PRECISION", "bf16")
torch.set_num_threads(2)
from elmlib.repro import experiments as ex

root = sys.argv[1] if len(sys.argv) > 1 else None  # None: runs/ or $ELMLIB_RUNS
t = time.time()
print("main:", ex.main_run("small", seed=0, task="rotten_tomatoes", root=root, stages=ex.SEARCH_STAGES), time.time() - t, flush=True)
t = time.time()
print("fixed:", ex.ablation_run("dynamic_ffn", "small", seed=0, task="rotten_tomatoes", root=root, stages=ex.SEARCH_STAGES), time.time() - t, flush=True)
