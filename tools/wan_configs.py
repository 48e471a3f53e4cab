"""Wan2.1's published component configs that several tools/ scripts build from."""

# Wan2.1's published scheduler_config.json (flow_shift 3.0: its 480p setting).
UNIPC = dict(beta_end=0.02, beta_schedule="linear", beta_start=0.0001, disable_corrector=[],
             dynamic_thresholding_ratio=0.995, final_sigmas_type="zero", flow_shift=3.0, lower_order_final=True,
             num_train_timesteps=1000, predict_x0=True, prediction_type="flow_prediction",
             rescale_betas_zero_snr=False, sample_max_value=1.0, solver_order=2, solver_p=None, solver_type="bh2",
             steps_offset=0, thresholding=False, timestep_spacing="linspace", trained_betas=None,
             use_beta_sigmas=False, use_exponential_sigmas=False, use_flow_sigmas=True, use_karras_sigmas=False)
