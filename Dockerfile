# Hugging Face Spaces (Docker SDK): Streamlit on port 8501, CPU only.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
RUN useradd -m -u 1000 user
WORKDIR /home/user/app
COPY --chown=user requirements.txt .
# torch's CPU-only wheels first (PyPI's Linux torch is the CUDA build, several GB a CPU Space never uses); pip then
# finds torch and torchvision satisfied and installs the rest from PyPI
RUN pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu \
    && pip install -r requirements.txt
COPY --chown=user . .
USER user
EXPOSE 8501
CMD ["streamlit", "run", "streamlit_app.py", "--server.port=8501", "--server.address=0.0.0.0"]
