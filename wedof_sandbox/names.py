"""Realistic French identity material for the seeded population (accents, apostrophes, hyphens)."""

FIRST_NAMES_F = (
    "Hélène", "Françoise", "Béatrice", "Camille", "Chloé", "Léa", "Manon", "Inès", "Zoé", "Noémie",
    "Maëlle", "Anaïs", "Céline", "Élodie", "Sophie", "Nathalie", "Isabelle", "Marie-Hélène", "Anne-Sophie",
    "Aurélie", "Agnès", "Gaëlle", "Maïwenn", "Fatima", "Aïcha", "Josée", "Océane", "Valérie", "Mélanie",
)
FIRST_NAMES_M = (
    "Jérôme", "Noël", "François", "Jean-Pierre", "Jean-Luc", "Stéphane", "Frédéric", "Cédric", "Loïc",
    "Raphaël", "Gaël", "Anthony", "Mathieu", "Thomas", "Nicolas", "Benoît", "Hervé", "Rémi", "Joël",
    "Yannick", "Mehdi", "Karim", "Pierre-Édouard", "Éric", "Grégoire", "Théo", "Lucas", "Hugo", "Adrien",
)
LAST_NAMES = (
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
    "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David", "Bertrand", "Roux", "Vincent", "Fournier",
    "Morel", "Girard", "André", "Lefebvre", "Mercier", "Dupont", "Lambert", "Bonnet", "François",
    "Martinez", "Legrand", "Garnier", "Faure", "Rousseau", "Blanc", "Guérin", "Müller", "Henry", "Roussel",
    "Nicolas", "Perrin", "Morin", "Mathieu", "Clément", "Gauthier", "Dumont", "Lopez", "Fontaine",
    "Chevalier", "Robin", "O'Brien", "N'Diaye", "D'Angelo", "Le Gall", "Le Goff", "De La Fontaine",
    "Martin-Lefèvre", "Dupont-Aignan", "Saint-Exupéry", "Benoît-Gonin", "Nguyễn", "Çelik", "Boëlle",
    "Pérez", "Ménard", "Hébert", "Lemaître", "Bénard", "Gérard", "Noël", "Daigre-Évrard",
)
CITIES = (
    ("Paris", "75011"), ("Lyon", "69003"), ("Marseille", "13006"), ("Saint-Étienne", "42000"),
    ("Besançon", "25000"), ("Nîmes", "30000"), ("Orléans", "45000"), ("Aix-en-Provence", "13100"),
    ("Villeneuve-d'Ascq", "59650"), ("Clermont-Ferrand", "63000"), ("Évry-Courcouronnes", "91000"),
    ("Fort-de-France", "97200"), ("Saint-Denis", "97400"), ("Angoulême", "16000"), ("Rennes", "35000"),
    ("L'Haÿ-les-Roses", "94240"), ("Bordeaux", "33000"), ("Lille", "59000"), ("Nantes", "44000"),
)
ROADS = (
    ("RUE", "Rue", "des Lilas"), ("AV", "Avenue", "Jean Jaurès"), ("BD", "Boulevard", "Saint-Michel"),
    ("RUE", "Rue", "de l'Église"), ("CHE", "Chemin", "des Écoliers"), ("PL", "Place", "du Général de Gaulle"),
    ("IMP", "Impasse", "des Peupliers"), ("ALL", "Allée", "Émile Zola"), ("RTE", "Route", "de Besançon"),
)
EMAIL_DOMAINS = ("example.fr", "example.com", "example.org", "exemple.test")
DEGREES = {
    3: "CAP, BEP (NIVEAU 3)",
    4: "BAC (NIVEAU 4)",
    5: "BAC+2 : DEUG, BTS, DUT, DEUST (NIVEAU 5)",
    6: "BAC+3/4 : Licence, Licence professionnelle, Maîtrise (NIVEAU 6)",
    7: "BAC+5 : grade master, DEA, DESS, ingénieur... (NIVEAU 7)",
    8: "Doctorat (NIVEAU 8)",
}
