"""Beyond the paper's tables: SQuAD fine-tuning, the causal-LM setting (Table IV), zero-cost proxies and
the FlexiBERT benchmark. They use model, nas, train and data; never pipeline internals."""
