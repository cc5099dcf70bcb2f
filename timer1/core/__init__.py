"""The method of Time-R1 (arXiv 2506.10630), readable on its own: it imports nothing outside
``timer1.core`` and ``timer1.util``. Reading order:

The model (Qwen2 / Llama, as Hugging Face names it)
    model.py        config, RMSNorm, RoPE, GQA attention, SwiGLU, blocks, KV cache, log-probs
    hf_io.py        config.json dialects, safetensors shards in and out
    tokenizer.py    tokenizer.json and the checkpoint's own chat template
    lora.py         LoRA layers keeping weight/bias names, PEFT's files, merge, disable
    sampler.py      generate: prefill once, copy to the sample rows, draw each token

The task
    window.py       one forecasting example (history, target, dates)
    prompts.py      the paper's prompt, the answer layout, the forecast parser
    codec.py        a window to prompt token ids, a completion back to a real-scale forecast

Training (SFT warm-up, then GRIP)
    sft_data.py     paper Algorithm 1: teacher candidates, min-MAPE pick, revised reasoning
    rewards.py      format, length, MSE, seasonal, trend, change-point rewards
    rollout.py      one GRIP step's rollout: sample k*G, score, batch, completion log-probs
    reference.py    the KL reference without a second model copy
    grip.py         selection, advantages, adaptive weights, the GRIP loss

Inference
    baselines.py    the statistical forecasters (teacher candidates, fallbacks)
    ets.py          exponential smoothing state space models (Hyndman et al. 2008): the batched filter
    ets_variance.py their closed-form forecast variances
    nelder_mead.py  Nelder-Mead for many small problems in lock-step
    ets_fit.py      maximum likelihood and AICc selection for many series at once (AutoETS)
    stl_ar.py       STL decomposition and an AR on the adjusted series (R's stlm with ar, FFORMA's)
    arima.py        seasonal ARIMA: its polynomials, conditional residuals, forecasts and variances
    arima_likelihood.py the exact likelihood of ARMA models by the Kalman filter, batched (R's ARIMA_Like)
    least_squares.py Levenberg-Marquardt for many small least-squares problems in lock-step
    arima_fit.py    unit-root tests and the stepwise order search for many series at once (AutoARIMA)
    metrics.py      MSE, MAE, MASE, CRPS, ...
    slow_think.py   draft, reflect (a critic, a backtest), refine
    policy.py       a model with its tokenizer and prompt format, loaded and saved as one

The judge (the same recipe weighing forecasters instead of writing digits)
    backtest.py     rolling-origin backtests of the statistical candidates, ETS, ARIMA and STL + AR in batches
    evidence.py     what the judge reads: step, length, seasonal and trend strength, level shift, errors
    judge.py        the judge's prompt, answer layout, parser, combination and reward
    judge_teacher.py paper Algorithm 1 for judgements: drafts, the best for the target, revised
    combine.py      combinations without a model: the equal mean of the best, a softmax of the errors
"""
