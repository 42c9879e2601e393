"""What the reproductions share: the resumable cells of a grid (:mod:`.cells`), the config every run records
(:mod:`.config`), the papers' own figures they are compared with (:mod:`.paper_tables`), a plain FL run with its
results folder (:mod:`.fl_run`) and the detection evaluation's report (:mod:`.detection_report`)."""
