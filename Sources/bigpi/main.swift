import Bigmachine
