"""Ecco Explorer: home page. Run with ``streamlit run app.py``."""

import streamlit as st

import dashboard

st.set_page_config(page_title="Ecco Explorer", page_icon="🔎", layout="wide")
lm, cap = dashboard.sidebar()

st.title("Ecco Explorer")
st.markdown(
    "Look inside a Transformer language model as it reads and writes text. "
    "Pick a model and a prompt in the sidebar and press **Run**; every page reads the same run."
)
st.markdown(
    """
| View | What it shows | Try |
|---|---|---|
| **Saliency** | how much each earlier token is responsible for each generated token | *William Shakespeare was born in the year* → which words point at the year |
| **Layer predictions** | the rank of each output token at every layer (logit lens); candidates side by side | *The keys to the cabinet* → is vs are |
| **Neuron factors** | FFN neuron activations decomposed into a few factors (NMF, PCA, ICA) | paste a paragraph and see factors follow syntax and topic |
| **Similarity** | CCA, SVCCA, PWCCA and CKA between the layers' hidden states and FFN activations | watch neighbouring layers agree |
| **Probing** | linear probes for part of speech at every layer, with control tasks (the paper's Table 1) | the bundled Universal Dependencies sentences |
"""
)

cap = dashboard.require_capture(cap)
st.subheader("Text")
dashboard.show_tokens(cap)
st.caption("Generated tokens are underlined; hover a token for its position.")
st.subheader("Tokens")
frame = cap.to_frame()
st.dataframe(frame, hide_index=True, width="stretch")
st.download_button("Download tokens (CSV)", frame.to_csv(index=False), "tokens.csv", "text/csv")
