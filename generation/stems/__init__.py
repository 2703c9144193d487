"""The use case both entry points share: prompts, the upload's analysis (``track``), the
musical grid and tempo lock (``grid``), finishing a stem (``finish``), rendering a request
(``render``), the stem record (``record``), the manifest and writing results (``output``)."""
