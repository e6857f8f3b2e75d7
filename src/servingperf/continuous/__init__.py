"""The continuous part: runs into the results store, release history, the regression gate over
stored runs, change points, and the outputs CI reads (Markdown, JUnit XML, JSON).

It reads run directories and the store only, so any stored run can be re-analysed and re-gated
long after it ran.
"""
