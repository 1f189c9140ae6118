"""Images with a known answer, made on the fly for tests, benchmarks and the demo.

cells        a synthetic cell patch, and a re-crop of one
fields       microscope fields made of real patches on a smear background, with the truth
"""
