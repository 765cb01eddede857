"""The paper's tables and figures, one module per figure family.

Compute and plotting are separate: each module's ``*_table`` functions turn run folders into the tidy
tables the notebooks write to ``results/<notebook>.csv``; its ``plot_*`` functions draw a figure from
such a table alone, so ``python -m elmlib figures`` (`elmlib.repro.plots`) re-renders every figure
from ``results/`` without training.

    growth          Fig. 1 (FFN growth), Fig. 2 (PCA curves)
    similarity      Fig. 3a (CKA of heads), Figs. 3b and 6 (block similarity)
    chat            Fig. 4 (chat examples of the causal-LM students, elmlib.repro.fig4_chat)
    architectures   Fig. 5 (found architectures)
    glue            Tables I/II (found model vs same-budget baselines)
    squad           Table III (SQuAD)
    ablations       Tables V-VIII
    efficiency      appendix (search cost, dynamic vs fixed FFN dims)
    search_variants beyond the paper: search modes, importance search
    extensions      Table IV (causal LM), FlexiBERT proxies, importance reordering
    style           the shared pyplot style, block labels and colours

    from elmlib.repro.figures import growth
    from elmlib.repro.figsave import save
    df = growth.fig2_table(main_run("smoke"), scale="smoke", seed=0)
    save(growth.plot_fig2(df), "fig2_pca_curves", "figures")   # figures/fig2_pca_curves.png and .pdf
"""
