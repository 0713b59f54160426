"""Knowledge bases: a company's own documents, parsed, chunked in both languages, indexed for
hybrid (BM25 + dense) retrieval, and cited in answers."""
