"""Extra persons from files: CSV or YAML lists of people Informat does not hold (external staff,
interns, a second administration), each file's rows joining the data set its kind's mappings read
(``staff`` → ``Leerkrachten``, ``pupils`` → ``Lln``)."""
