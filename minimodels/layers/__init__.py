"""Building blocks shared by the models: attention, RoPE, norms, MLPs, grouped-query attention, MoE, SSM."""
