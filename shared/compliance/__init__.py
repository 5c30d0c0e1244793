"""compliance: sanctions lists, KYC/sanctions/AML screening, decisions and reviews."""
