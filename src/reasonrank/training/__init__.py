"""Training: the 13k data layout and its checks (`records`), SFT/RL examples built with the
engine's prompt builder (`examples`), and the TRL-based SFT and GRPO trainers (`sft`, `grpo`;
need the `train` extra). The reward lives in `reasonrank.training.rewards`."""
